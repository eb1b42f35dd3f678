/* io/distributed_sampler.c: one rank's share of each epoch (torch's DistributedSampler,
 * Lightning's DistributedSamplerWrapper).
 *
 * Both are one thing here: an inner sampler gives the epoch's full order (sequential or
 * random for wf_distributed_sampler, the user's for the wrapper) and this rank keeps every
 * R-th position of that order padded or cut to total_size. Padding repeats the order from
 * its start, so position i of the padded list is order[i % len]; cutting only drops
 * positions >= total_size <= len. No communication: the order is a function of the epoch
 * (and the seed), so every rank computes the same one. */
#include "../tensor/tensor_impl.h"
#include "weft/data.h"

#include <string.h>

typedef struct {
    wf_sampler inner;   /* owned */
    int R, rank;
    bool drop_last;
} dsmp;

/* PyTorch: drop_last and len % R != 0 -> ceil((len - R) / R) = floor(len / R) (0 if len < R);
 * otherwise ceil(len / R). With len % R == 0 both are len / R. */
static int64_t num_samples(int64_t len, int R, bool drop_last) {
    return drop_last ? len / R : len / R + (len % R != 0);
}

static int64_t dsmp_len(void *ud) {
    dsmp *d = ud;
    return num_samples(d->inner.len(d->inner.ud), d->R, d->drop_last);
}

static int dsmp_indices(void *ud, uint64_t epoch, int64_t *out) {
    dsmp *d = ud;
    int64_t n = d->inner.len(d->inner.ud);
    if (n <= 0) return 0;   /* an empty epoch: num_samples is 0 */
    /* the full order is scratch, allocated per call so that indices() stays reentrant */
    int64_t *order = wf__malloc(sizeof(int64_t) * (size_t)n);
    if (!order) return wf__error(WF_ENOMEM, "distributed sampler: out of memory for %lld indices", (long long)n);
    int rc = d->inner.indices(d->inner.ud, epoch, order);
    if (!rc) {
        int64_t ns = num_samples(n, d->R, d->drop_last);
        for (int64_t k = 0; k < ns; k++) out[k] = order[(d->rank + k * d->R) % n];
    }
    wf__free(order, sizeof(int64_t) * (size_t)n);
    return rc;
}

static void dsmp_free(void *ud) {
    dsmp *d = ud;
    wf_sampler_free(&d->inner);
    wf__free(d, sizeof *d);
}

static int check_ranks(const char *fn, int num_replicas, int rank) {
    if (num_replicas < 1)
        return wf__error(WF_EINVAL, "%s: num_replicas must be at least 1, got %d", fn, num_replicas);
    if (rank < 0 || rank >= num_replicas)
        return wf__error(WF_EINVAL, "%s: invalid rank %d, rank should be in the interval [0, %d]", fn, rank,
                         num_replicas - 1);
    return 0;
}

int wf_distributed_sampler_wrap(const wf_sampler *inner, int num_replicas, int rank, bool drop_last,
                                wf_sampler *out) {
    if (!inner || !out) return wf__error(WF_ENULL, "wf_distributed_sampler_wrap: NULL %s", inner ? "output" : "sampler");
    if (!inner->len || !inner->indices)
        return wf__error(WF_ENULL, "wf_distributed_sampler_wrap: the inner sampler has no len or indices function");
    int rc = check_ranks("wf_distributed_sampler_wrap", num_replicas, rank);
    if (rc) return rc;
    dsmp *d = wf__calloc(1, sizeof *d);
    if (!d) return wf__error(WF_ENOMEM, "wf_distributed_sampler_wrap: out of memory");
    *d = (dsmp){ *inner, num_replicas, rank, drop_last };
    *out = (wf_sampler){ dsmp_len, dsmp_indices, dsmp_free, d };
    return 0;
}

int wf_distributed_sampler(int64_t dataset_len, int num_replicas, int rank, bool shuffle, uint64_t seed,
                           bool drop_last, wf_sampler *out) {
    if (!out) return wf__error(WF_ENULL, "wf_distributed_sampler: NULL output");
    if (dataset_len < 0)
        return wf__error(WF_EINVAL, "wf_distributed_sampler: negative dataset length %lld", (long long)dataset_len);
    int rc = check_ranks("wf_distributed_sampler", num_replicas, rank);
    if (rc) return rc;
    /* the same generator as wf_random_sampler: rank-independent by construction */
    wf_sampler inner;
    rc = shuffle ? wf_random_sampler(dataset_len, seed, &inner) : wf_sequential_sampler(dataset_len, &inner);
    if (rc) return rc;
    rc = wf_distributed_sampler_wrap(&inner, num_replicas, rank, drop_last, out);
    if (rc) {   /* the message names the wrapper: say which call it was */
        wf_sampler_free(&inner);
        return wf__error(rc, "wf_distributed_sampler: out of memory");
    }
    return 0;
}
