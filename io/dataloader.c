/* io/dataloader.c: batches from a dataset in sampler order, optionally made ahead of time
 * by worker threads.
 *
 * Workers claim batch numbers in order and fill slots of a ring (capacity workers x
 * prefetch); the caller takes batches strictly in order, so results are identical with any
 * number of workers. A worker's error travels with its batch (errors are thread-local).
 * A batch no worker has claimed yet when the caller asks for it is made by the caller. */
#include "../tensor/tensor_impl.h"
#include "weft/data.h"

#include <pthread.h>
#include <string.h>

enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY, SLOT_FAILED };

typedef struct {
    int64_t batch;
    int state;
    int rc;
    char msg[512];
    wf_tensor *t[8];
} slot;

struct wf_dataloader {
    wf_dataset ds;
    wf_sampler sampler;
    /* What wf_dataloader_distribute needs to rebuild the default sampler as a distributed
     * one: whether the sampler is still the loader's own, and its shuffle and (resolved) seed. */
    bool default_sampler, shuffle, distributed;
    uint64_t seed;
    int64_t batch_size;
    bool drop_last;
    int nf;

    int64_t *idx;          /* this epoch's order */
    int64_t n_idx, n_batches;
    uint64_t epoch;
    bool started, finished;
    int64_t next_consume;

    int nw, cap;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int64_t next_claim;
    int64_t caller_claim;  /* a batch kept for the caller (start_epoch), or -1 */
    slot *slots;
    bool stop;
};

static int make_batch(wf_dataloader *dl, int64_t b, wf_tensor **out) {
    int64_t lo = b * dl->batch_size, n = dl->n_idx - lo < dl->batch_size ? dl->n_idx - lo : dl->batch_size;
    for (int f = 0; f < dl->nf; f++) out[f] = NULL;
    int rc = dl->ds.get_batch(dl->ds.ud, dl->idx + lo, n, out);
    if (rc > 0) rc = wf__error(WF_EINVAL, "wf_dataloader_next: the dataset's get_batch returned %d (expected 0 or a "
                               "negative WF_E* code)", rc);
    for (int f = 0; !rc && f < dl->nf; f++) {
        /* a user callback that "succeeds" without a tensor would crash the collation */
        if (!out[f]) rc = wf__error(WF_ENULL, "wf_dataloader_next: the dataset's get_batch returned 0 but left "
                                    "field %d of %d NULL", f, dl->nf);
        else if (!out[f]->ndim || out[f]->shape[0] != n)
            rc = wf__error(WF_ESHAPE, "wf_dataloader_next: the dataset's get_batch gave field %d a first dimension "
                           "of %lld, expected %lld (the batch size)", f,
                           (long long)(out[f]->ndim ? out[f]->shape[0] : -1), (long long)n);
    }
    if (rc)
        for (int f = 0; f < dl->nf; f++) { wf_tensor_free(out[f]); out[f] = NULL; }
    return rc;
}

/* A sampler handed in by the user: both callbacks present. */
static int check_sampler(const char *op, const wf_sampler *s) {
    if (!s->len || !s->indices)
        return wf__error(WF_ENULL, "%s: incomplete sampler (len %s, indices %s)", op, s->len ? "set" : "NULL",
                         s->indices ? "set" : "NULL");
    return 0;
}

static void *worker(void *arg) {
    wf_dataloader *dl = arg;
    pthread_mutex_lock(&dl->mu);
    while (!dl->stop) {
        if (dl->started && dl->next_claim < dl->n_batches && dl->next_claim < dl->next_consume + dl->cap) {
            int64_t b = dl->next_claim++;
            slot *s = &dl->slots[b % dl->cap];
            s->batch = b;
            s->state = SLOT_BUSY;
            pthread_mutex_unlock(&dl->mu);
            wf_clear_error();
            int rc = make_batch(dl, b, s->t);
            pthread_mutex_lock(&dl->mu);
            if (rc) {
                s->rc = rc;
                snprintf(s->msg, sizeof s->msg, "%s", wf_error_message());
                s->state = SLOT_FAILED;
            } else s->state = SLOT_READY;
            pthread_cond_broadcast(&dl->cv_done);
        } else {
            pthread_cond_wait(&dl->cv_work, &dl->mu);
        }
    }
    pthread_mutex_unlock(&dl->mu);
    return NULL;
}

static void drop_slots(wf_dataloader *dl) {   /* with mu held and no slot busy */
    for (int i = 0; i < dl->cap; i++) {
        slot *s = &dl->slots[i];
        if (s->state == SLOT_READY)
            for (int f = 0; f < dl->nf; f++) wf_tensor_free(s->t[f]);
        s->state = SLOT_EMPTY;
    }
}

wf_dataloader *wf_dataloader_new(const wf_dataset *ds, const wf_dataloader_opts *o) {
    wf_dataloader_opts def = { 0 };
    if (!o) o = &def;
    if (!ds || !ds->len || !ds->get_batch) { wf__error(WF_ENULL, "wf_dataloader_new: NULL or incomplete dataset"); return NULL; }
    if (ds->n_fields < 1 || ds->n_fields > 8) {
        wf__error(WF_EINVAL, "wf_dataloader_new: a dataset must have 1..8 fields, got %d", ds->n_fields);
        return NULL;
    }
    if (o->batch_size < 0 || o->num_workers < 0 || o->prefetch_factor < 0) {
        wf__error(WF_EINVAL, "wf_dataloader_new: batch_size (%lld), num_workers (%d) and prefetch_factor (%d) "
                  "must not be negative", (long long)o->batch_size, o->num_workers, o->prefetch_factor);
        return NULL;
    }
    if (o->sampler && check_sampler("wf_dataloader_new", o->sampler)) return NULL;
    wf_dataloader *dl = wf__calloc(1, sizeof *dl);
    if (!dl) { wf__error(WF_ENOMEM, "wf_dataloader_new: out of memory"); return NULL; }
    dl->ds = *ds;
    dl->nf = ds->n_fields;
    dl->caller_claim = -1;
    dl->batch_size = o->batch_size ? o->batch_size : 1;
    dl->drop_last = o->drop_last;
    int64_t n = ds->len(ds->ud);
    int rc;
    dl->default_sampler = !o->sampler;
    dl->shuffle = o->shuffle;
    dl->seed = o->seed ? o->seed : wf_rng_get_state().seed;
    if (o->sampler) { dl->sampler = *o->sampler; rc = 0; }
    else if (o->shuffle) rc = wf_random_sampler(n, dl->seed, &dl->sampler);
    else rc = wf_sequential_sampler(n, &dl->sampler);
    if (rc) { wf__free(dl, sizeof *dl); return NULL; }
    pthread_mutex_init(&dl->mu, NULL);
    pthread_cond_init(&dl->cv_work, NULL);
    pthread_cond_init(&dl->cv_done, NULL);
    dl->nw = o->num_workers;
    dl->cap = dl->nw ? dl->nw * (o->prefetch_factor ? o->prefetch_factor : 2) : 1;
    dl->slots = wf__calloc((size_t)dl->cap, sizeof *dl->slots);
    if (!dl->slots) { wf__error(WF_ENOMEM, "wf_dataloader_new: out of memory"); wf_dataloader_free(dl); return NULL; }
    if (dl->nw) {
        dl->threads = wf__calloc((size_t)dl->nw, sizeof *dl->threads);
        if (!dl->threads) { wf__error(WF_ENOMEM, "wf_dataloader_new: out of memory"); wf_dataloader_free(dl); return NULL; }
        for (int i = 0; i < dl->nw; i++) {
            if (pthread_create(&dl->threads[i], NULL, worker, dl)) {
                dl->nw = i;
                wf__error(WF_ENOMEM, "wf_dataloader_new: could not start worker thread %d", i);
                wf_dataloader_free(dl);
                return NULL;
            }
        }
    }
    return dl;
}

int64_t wf_dataloader_dataset_len(const wf_dataloader *dl) {
    return dl ? dl->sampler.len(dl->sampler.ud) : (wf__error(WF_ENULL, "wf_dataloader_dataset_len: NULL loader"), -1);
}
int wf_dataloader_n_fields(const wf_dataloader *dl) {
    return dl ? dl->nf : (wf__error(WF_ENULL, "wf_dataloader_n_fields: NULL loader"), -1);
}

int64_t wf_dataloader_len(const wf_dataloader *dl) {
    if (!dl) return wf__error(WF_ENULL, "wf_dataloader_len: NULL loader"), -1;
    int64_t n = dl->sampler.len(dl->sampler.ud);
    return dl->drop_last ? n / dl->batch_size : (n + dl->batch_size - 1) / dl->batch_size;
}

/* keep_first: the caller is about to ask for batch 0 (an epoch started by next): it makes
 * that batch itself, so workers start from batch 1 and nobody waits for a thread to wake. */
/* skip: batches of the epoch already consumed (wf_dataloader_set_position); set under the
 * lock before the workers are woken, so that none of them makes a skipped batch. */
static int start_epoch(wf_dataloader *dl, uint64_t epoch, bool keep_first, int64_t skip) {
    pthread_mutex_lock(&dl->mu);
    dl->started = false;           /* workers stop claiming */
    for (;;) {                     /* wait for batches in flight */
        bool busy = false;
        for (int i = 0; i < dl->cap; i++) busy = busy || dl->slots[i].state == SLOT_BUSY;
        if (!busy) break;
        pthread_cond_wait(&dl->cv_done, &dl->mu);
    }
    drop_slots(dl);
    int64_t n = dl->sampler.len(dl->sampler.ud);
    int rc = n < 0 ? wf__error(WF_EINVAL, "wf_dataloader_set_epoch: the sampler's len returned %lld", (long long)n) : 0;
    if (!rc && (n != dl->n_idx || !dl->idx)) {
        wf__free(dl->idx, 0);
        dl->idx = wf__malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!dl->idx) rc = wf__error(WF_ENOMEM, "wf_dataloader_set_epoch: out of memory");
    }
    if (!rc) rc = dl->sampler.indices(dl->sampler.ud, epoch, dl->idx);
    if (!rc) {
        /* indices outside the dataset would reach the user's get_batch as out-of-range reads */
        int64_t nds = dl->ds.len(dl->ds.ud);
        for (int64_t i = 0; i < n && !rc; i++)
            if (dl->idx[i] < 0 || dl->idx[i] >= nds)
                rc = wf__error(WF_EINDEX, "wf_dataloader_set_epoch: the sampler gave index %lld at position %lld, "
                               "outside the dataset of length %lld", (long long)dl->idx[i], (long long)i,
                               (long long)nds);
    }
    if (!rc) {
        dl->n_idx = n;
        dl->n_batches = wf_dataloader_len(dl);
        dl->epoch = epoch;
        if (skip > dl->n_batches) skip = dl->n_batches;
        dl->next_consume = skip;
        dl->next_claim = skip + (keep_first && dl->n_batches > skip ? 1 : 0);
        dl->caller_claim = keep_first && dl->n_batches > skip ? skip : -1;
        dl->finished = false;
        dl->started = true;
        pthread_cond_broadcast(&dl->cv_work);
    }
    pthread_mutex_unlock(&dl->mu);
    return rc;
}

int wf_dataloader_set_epoch(wf_dataloader *dl, uint64_t epoch) {
    if (!dl) return wf__error(WF_ENULL, "wf_dataloader_set_epoch: NULL loader");
    return start_epoch(dl, epoch, false, 0);
}

/* Swap in s with no batch in flight; the old sampler is freed unless s took it over (a
 * wrapper around it). The next wf_dataloader_next starts an epoch with the new one. */
static void replace_sampler(wf_dataloader *dl, const wf_sampler *s, bool free_old) {
    pthread_mutex_lock(&dl->mu);
    dl->started = false;
    for (;;) {
        bool busy = false;
        for (int i = 0; i < dl->cap; i++) busy = busy || dl->slots[i].state == SLOT_BUSY;
        if (!busy) break;
        pthread_cond_wait(&dl->cv_done, &dl->mu);
    }
    drop_slots(dl);
    if (free_old) wf_sampler_free(&dl->sampler);
    dl->sampler = *s;
    wf__free(dl->idx, 0);
    dl->idx = NULL;
    dl->n_idx = 0;
    pthread_mutex_unlock(&dl->mu);
}

int wf_dataloader_set_sampler(wf_dataloader *dl, const wf_sampler *s) {
    if (!dl || !s) return wf__error(WF_ENULL, "wf_dataloader_set_sampler: NULL argument");
    if (check_sampler("wf_dataloader_set_sampler", s)) return wf_error();
    replace_sampler(dl, s, true);
    dl->default_sampler = dl->distributed = false;
    return 0;
}

int wf_dataloader_distribute(wf_dataloader *dl, int num_replicas, int rank) {
    if (!dl) return wf__error(WF_ENULL, "wf_dataloader_distribute: NULL loader");
    /* Twice would shard a custom sampler's shard again: refuse rather than lose data. */
    if (dl->distributed)
        return wf__error(WF_EINVAL, "wf_dataloader_distribute: the loader is already distributed "
                         "(asked again for num_replicas %d, rank %d)", num_replicas, rank);
    wf_sampler s;
    int rc;
    if (dl->default_sampler) {
        /* Lightning's _get_distributed_sampler: DistributedSampler(shuffle=<loader's>, seed, drop_last=False) */
        rc = wf_distributed_sampler(dl->ds.len(dl->ds.ud), num_replicas, rank, dl->shuffle, dl->seed, false, &s);
        if (!rc) replace_sampler(dl, &s, true);
    } else {
        /* the wrapper takes over the custom sampler, so the loader must not free it */
        rc = wf_distributed_sampler_wrap(&dl->sampler, num_replicas, rank, false, &s);
        if (!rc) replace_sampler(dl, &s, false);
    }
    if (rc) {   /* copied: the message buffer is about to be rewritten */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", wf_error_message());
        return wf__error(rc, "wf_dataloader_distribute: %s", msg);
    }
    dl->distributed = true;
    return 0;
}

int wf_dataloader_next(wf_dataloader *dl, wf_tensor **out) {
    if (!dl || !out) return wf__error(WF_ENULL, "wf_dataloader_next: NULL argument");
    if (!dl->started) {
        int rc = start_epoch(dl, dl->finished ? dl->epoch + 1 : dl->epoch, true, 0);
        if (rc) return rc;
    }
    if (dl->next_consume >= dl->n_batches) {
        /* under mu: workers read started (and next_consume) while deciding what to claim */
        if (dl->nw) pthread_mutex_lock(&dl->mu);
        dl->started = false;
        if (dl->nw) pthread_mutex_unlock(&dl->mu);
        dl->finished = true;
        return 0;
    }
    int64_t b = dl->next_consume;
    if (dl->nw == 0) {
        int rc = make_batch(dl, b, out);
        if (rc) return rc;
    } else {
        pthread_mutex_lock(&dl->mu);
        if (dl->next_claim == b || dl->caller_claim == b) {
            /* No worker has taken this batch yet (the first of an epoch, or workers that fall
             * behind): make it here rather than wait for a thread to wake up. The batch is the
             * same whoever makes it; its slot stays empty, and workers go on from b + 1. */
            if (dl->caller_claim == b) dl->caller_claim = -1;
            else dl->next_claim++;
            pthread_cond_broadcast(&dl->cv_work);
            pthread_mutex_unlock(&dl->mu);
            int rc = make_batch(dl, b, out);
            pthread_mutex_lock(&dl->mu);
            dl->next_consume++;
            pthread_cond_broadcast(&dl->cv_work);
            pthread_mutex_unlock(&dl->mu);
            if (rc) return rc;
            for (int f = 0; f < dl->nf; f++) wf__scope_register(out[f]);
            return 1;
        }
        slot *s = &dl->slots[b % dl->cap];
        while (!(s->batch == b && (s->state == SLOT_READY || s->state == SLOT_FAILED)))
            pthread_cond_wait(&dl->cv_done, &dl->mu);
        int rc = s->rc;
        if (s->state == SLOT_FAILED) {
            wf__error(rc, "%s", s->msg);
            s->state = SLOT_EMPTY;
            s->rc = 0;
            dl->next_consume++;   /* before unlocking: workers read it under mu */
            pthread_cond_broadcast(&dl->cv_work);
            pthread_mutex_unlock(&dl->mu);
            return rc;
        }
        for (int f = 0; f < dl->nf; f++) out[f] = s->t[f];
        s->state = SLOT_EMPTY;
        dl->next_consume++;
        pthread_cond_broadcast(&dl->cv_work);
        pthread_mutex_unlock(&dl->mu);
        for (int f = 0; f < dl->nf; f++) wf__scope_register(out[f]);
        return 1;
    }
    dl->next_consume++;
    for (int f = 0; f < dl->nf; f++) wf__scope_register(out[f]);
    return 1;
}

void wf_dataloader_free(wf_dataloader *dl) {
    if (!dl) return;
    pthread_mutex_lock(&dl->mu);
    dl->stop = true;
    pthread_cond_broadcast(&dl->cv_work);
    pthread_mutex_unlock(&dl->mu);
    for (int i = 0; i < dl->nw; i++) pthread_join(dl->threads[i], NULL);
    if (dl->slots) drop_slots(dl);
    wf__free(dl->slots, 0);
    wf__free(dl->threads, 0);
    wf__free(dl->idx, 0);
    wf_sampler_free(&dl->sampler);
    wf_dataset_free(&dl->ds);
    pthread_mutex_destroy(&dl->mu);
    pthread_cond_destroy(&dl->cv_work);
    pthread_cond_destroy(&dl->cv_done);
    wf__free(dl, sizeof *dl);
}

/* Position (torchdata's StatefulDataLoader): what a checkpoint needs to go on mid-epoch. */
int wf_dataloader_position(const wf_dataloader *dl, uint64_t *epoch, int64_t *batches) {
    if (!dl || !epoch || !batches) return wf__error(WF_ENULL, "wf_dataloader_position: NULL argument");
    wf_dataloader *m = (wf_dataloader *)dl;   /* the lock only; nothing observable changes */
    pthread_mutex_lock(&m->mu);
    if (dl->finished) {                 /* the epoch ran out: the next one starts at its beginning */
        *epoch = dl->epoch + 1;
        *batches = 0;
    } else {
        *epoch = dl->epoch;
        *batches = dl->started ? dl->next_consume : 0;
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int wf_dataloader_set_position(wf_dataloader *dl, uint64_t epoch, int64_t batches) {
    if (!dl) return wf__error(WF_ENULL, "wf_dataloader_set_position: NULL loader");
    int64_t len = wf_dataloader_len(dl);
    if (batches < 0 || batches > len)
        return wf__error(WF_EINVAL, "wf_dataloader_set_position: batches=%lld is not in 0..%lld (the batches of an "
                         "epoch)", (long long)batches, (long long)len);
    /* the skipped batches are never made: workers claim from `batches` on */
    return start_epoch(dl, epoch, false, batches);
}
