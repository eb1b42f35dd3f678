/* examples/gpt/gpt_data.h: training text as token ids, and random batches from it. */
#ifndef WEFT_EXAMPLE_GPT_DATA_H
#define WEFT_EXAMPLE_GPT_DATA_H

#include "weft/weft.h"

#include <stdio.h>

typedef struct gpt_data {
    uint16_t *train, *val;       /* token ids (owned) */
    int64_t n_train, n_val;
    int64_t vocab_size;          /* characters: distinct bytes; tokens: the largest id + 1 */
    bool chars;                  /* character level: itos maps ids to bytes */
    unsigned char itos[256];
    int16_t stoi[256];           /* -1 for a byte the text does not hold */
} gpt_data;

/* Load path: a file ending in ".bin" holds little-endian uint16 tokens (llm.c's and
 * nanoGPT's train.bin/val.bin without a header); anything else is text, tokenized per byte
 * (nanoGPT's shakespeare_char prepare.py tokenizes per Unicode character; per byte is the
 * same for ASCII). val_path (may be NULL) is the validation file; without it the last 10%
 * of the tokens are (a 90/10 split as prepare.py makes). Returns 0 or a code with a message
 * naming the file. */
int gpt_data_load(gpt_data *d, const char *path, const char *val_path);
void gpt_data_free(gpt_data *d);

/* A batch of B random windows of block_size tokens: x [B, T] and y = x shifted by one
 * (nanoGPT's get_batch), int64 on the CPU in the caller's scope. The starts come from
 * weft's global RNG (wf_randint), so a checkpoint of the RNG makes a resumed run draw the
 * same batches. Returns 0 or a code (a split shorter than block_size + 1 tokens). */
int gpt_get_batch(const gpt_data *d, bool train, int64_t B, int64_t T, wf_tensor **x, wf_tensor **y);

/* Encode text into ids (unknown bytes are an error); decode ids into buf. */
int gpt_encode(const gpt_data *d, const char *s, int64_t *ids, int64_t cap, int64_t *n);
void gpt_decode(const gpt_data *d, const int64_t *ids, int64_t n, FILE *out);

#endif
