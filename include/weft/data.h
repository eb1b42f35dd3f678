/* weft/data.h: datasets, samplers and the DataLoader (torch.utils.data in C).
 *
 * A dataset is a length plus a way to fetch items; a sampler orders indices for an epoch;
 * a DataLoader groups indices into batches, collates them into contiguous batch tensors
 * and can prepare batches on background threads while the caller trains. In data-parallel
 * training each rank's loader is sharded with wf_dataloader_distribute (a DistributedSampler,
 * or a wrapper around the user's sampler): no communication, every rank the same batch count. */
#ifndef WEFT_DATA_H
#define WEFT_DATA_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- datasets */

/* A map-style dataset. get_batch fills out[0..n_fields) with tensors whose first dimension
 * is n (the samples at indices, in order); the tensors are owned by the caller (no scope is
 * open in loader threads). Return 0 or a code with wf_set_error. It may be called from
 * several threads at once. */
typedef struct wf_dataset {
    int64_t (*len)(void *ud);
    int n_fields;                 /* e.g. 2 for (image, label) */
    int (*get_batch)(void *ud, const int64_t *indices, int64_t n, wf_tensor **out);
    void (*free)(void *ud);       /* optional */
    void *ud;
} wf_dataset;

/* A dataset over tensors that share their first dimension (torch's TensorDataset).
 * The tensors are retained; n_fields = n. Returns 0 or WF_ESHAPE / WF_ENULL. */
int wf_tensor_dataset(wf_tensor *const *tensors, int n, wf_dataset *out);
/* The first n samples of base... : a subset by explicit indices (copied). */
int wf_subset_dataset(const wf_dataset *base, const int64_t *indices, int64_t n, wf_dataset *out);
void wf_dataset_free(wf_dataset *d);

/* 8-bit images kept as bytes (torchvision's datasets keep .data as uint8 too), with
 * ToTensor() + Normalize(mean, std) applied to each batch as it is drawn, in one pass:
 * a sample's f32 values are ((float)byte / 255 - mean) / std (f32 arithmetic, the same bits
 * as converting to f32 and calling wf_div_scalar(., 255), wf_sub_scalar(., mean),
 * wf_div_scalar(., std)); std == 0 gives byte / 255. images: WF_U8 on the CPU, [N, ...]
 * (batches are f32 [n, ...]); targets: [N, ...] of any dtype, gathered as they are, or NULL
 * for a one-field dataset. Both are retained (no copy unless images is not contiguous).
 * Memory is the bytes plus one batch. Returns 0, WF_ENULL, WF_EDTYPE (not uint8),
 * WF_EDEVICE (not on the CPU), WF_ESHAPE (first dimensions differ), WF_EINVAL (std < 0 or
 * not finite), WF_ENOMEM. get_batch gives WF_EINDEX for an index outside [0, N). */
int wf_uint8_image_dataset(wf_tensor *images, wf_tensor *targets, double mean, double std, wf_dataset *out);
/* The same fused pass on a whole tensor: a new contiguous f32 tensor of x's shape (owned per
 * tensor.h). x must be WF_U8 on the CPU; NULL + WF_ENULL / WF_EDTYPE / WF_EDEVICE otherwise. */
wf_tensor *wf_normalize_uint8(wf_tensor *x, double mean, double std);

/* Fashion-MNIST / MNIST from IDX files in dir ("train" or "test" split):
 * images f32 [N,1,28,28] scaled to [0,1] (then normalized with mean/std when std > 0),
 * labels i64 [N]. dir NULL = /usr/share/datasets/fashion-mnist. The images stay uint8 in
 * memory (a wf_uint8_image_dataset): each batch is converted as it is drawn. */
int wf_fashion_mnist(const char *dir, bool train, double mean, double std, wf_dataset *out);

/* ---------------------------------------------------------------- samplers */

/* Produces the index order of one epoch. indices() writes len() indices. */
typedef struct wf_sampler {
    int64_t (*len)(void *ud);
    int (*indices)(void *ud, uint64_t epoch, int64_t *out);
    void (*free)(void *ud);
    void *ud;
} wf_sampler;

/* 0..n-1 in order. */
int wf_sequential_sampler(int64_t n, wf_sampler *out);
/* A permutation of 0..n-1 that depends only on (seed, epoch): reproducible and resumable. */
int wf_random_sampler(int64_t n, uint64_t seed, wf_sampler *out);
/* The given indices in order (shuffle=false) or permuted per epoch (shuffle=true). */
int wf_subset_sampler(const int64_t *indices, int64_t n, bool shuffle, uint64_t seed, wf_sampler *out);
void wf_sampler_free(wf_sampler *s);

/* ---------------------------------------------------------------- distributed samplers */

/* torch.utils.data.DistributedSampler: rank's share of an epoch when num_replicas processes
 * train together. No communication: every rank computes the same epoch order on its own and
 * keeps every num_replicas-th index from position rank.
 *
 *  - len() = num_samples on every rank: drop_last and dataset_len % R != 0 gives
 *    floor(dataset_len / R) (PyTorch's ceil((len - R) / R)), otherwise ceil(dataset_len / R);
 *    total_size = num_samples * R. Equal lengths on all ranks keep collectives in step.
 *  - The epoch order is wf_random_sampler(dataset_len, seed)'s permutation for that epoch
 *    when shuffle (a function of (seed, epoch) only: the same on every rank), else
 *    0..dataset_len-1. Without drop_last it is padded to total_size by repeating its start
 *    (whole copies if padding exceeds the length); with drop_last its tail is cut at
 *    total_size. Rank r takes positions r, r + R, r + 2R, ... < total_size.
 *  - num_replicas < 1, rank outside [0, num_replicas) or dataset_len < 0: WF_EINVAL naming the
 *    values; out NULL: WF_ENULL. Free with wf_sampler_free. */
int wf_distributed_sampler(int64_t dataset_len, int num_replicas, int rank, bool shuffle, uint64_t seed,
                           bool drop_last, wf_sampler *out);
/* Lightning's DistributedSamplerWrapper: shards any sampler. Each epoch draws inner's
 * indices for that epoch and shards that list exactly as above (shuffle=false over the
 * inner order), so with an inner sampler that shuffles by (seed, epoch) the ranks agree.
 * On success it owns *inner (copied struct; freed with *out; do not free *inner). On
 * failure *inner is untouched and still the caller's. Errors as above, plus WF_ENULL for a
 * NULL or incomplete inner sampler. */
int wf_distributed_sampler_wrap(const wf_sampler *inner, int num_replicas, int rank, bool drop_last,
                                wf_sampler *out);

/* ---------------------------------------------------------------- DataLoader */

typedef struct wf_dataloader wf_dataloader;
typedef struct wf_dataloader_opts {
    int64_t batch_size;   /* 0 = 1 */
    bool shuffle;         /* random sampler seeded with seed (ignored if sampler given) */
    bool drop_last;
    uint64_t seed;        /* 0 = derived from the global RNG seed */
    int num_workers;      /* 0 = batches are made on the caller's thread */
    int prefetch_factor;  /* batches queued per worker; 0 = 2 */
    const wf_sampler *sampler; /* optional: takes ownership (copied struct) */
} wf_dataloader_opts;

/* The loader takes ownership of the dataset (copied struct; freed with the loader). */
wf_dataloader *wf_dataloader_new(const wf_dataset *ds, const wf_dataloader_opts *opts);
/* Start (or restart) an epoch; the random sampler uses epoch in its permutation. */
int wf_dataloader_set_epoch(wf_dataloader *dl, uint64_t epoch);
/* Next batch of the current epoch into out[0..n_fields): returns 1 with a batch (tensors
 * join the caller's current scope, or are owned by the caller with none open), 0 at the end
 * of the epoch, or a negative code (the worker's error message is kept). */
int wf_dataloader_next(wf_dataloader *dl, wf_tensor **out);
/* Number of batches per epoch. */
int64_t wf_dataloader_len(const wf_dataloader *dl);
int64_t wf_dataloader_dataset_len(const wf_dataloader *dl);
int wf_dataloader_n_fields(const wf_dataloader *dl);
/* Replace the sampler with a custom one: the loader owns *s (copied struct) on success and
 * frees the previous sampler; the next wf_dataloader_next starts an epoch with it and the
 * batch count comes from it. NULL arguments: WF_ENULL (then *s stays the caller's). */
int wf_dataloader_set_sampler(wf_dataloader *dl, const wf_sampler *s);
/* What Fabric's setup_dataloader does when world size > 1 (use_distributed_sampler):
 * shards the loader's sampler over num_replicas ranks. A loader still on its default sampler
 * (sequential, or random from shuffle=true) gets wf_distributed_sampler(dataset length,
 * num_replicas, rank, its shuffle, its seed, drop_last=false) as Lightning does; a custom
 * sampler (opts.sampler or wf_dataloader_set_sampler) is wrapped with
 * wf_distributed_sampler_wrap(drop_last=false). Every rank then has the same number of
 * batches (padding repeats a few samples), so uneven data never leaves a rank waiting in a
 * collective. The loader's seed must be the same on every rank (give opts.seed, or seed the
 * global RNG alike before creating the loader). Errors: WF_ENULL, WF_EINVAL for a bad
 * num_replicas or rank (naming them) or a loader already distributed; the loader is
 * unchanged on error. */
int wf_dataloader_distribute(wf_dataloader *dl, int num_replicas, int rank);
/* Where the loader is, for a checkpoint that resumes mid-epoch (torchdata's
 * StatefulDataLoader.state_dict): the epoch and how many of its batches were handed out.
 * After an epoch's end (next returned 0) it is the next epoch at batch 0. WF_ENULL. */
int wf_dataloader_position(const wf_dataloader *dl, uint64_t *epoch, int64_t *batches);
/* Go back to a position: start epoch (as set_epoch) and skip its first `batches` batches
 * without making them (no sample is read twice); the next wf_dataloader_next returns batch
 * `batches`. Workers carry no RNG of their own (a batch is the same whichever thread makes
 * it), so nothing else is needed for the same batches. WF_EINVAL when batches is not in
 * 0..wf_dataloader_len. */
int wf_dataloader_set_position(wf_dataloader *dl, uint64_t epoch, int64_t batches);
/* Stops workers and frees everything. NULL is fine. */
void wf_dataloader_free(wf_dataloader *dl);

#ifdef __cplusplus
}
#endif
#endif
