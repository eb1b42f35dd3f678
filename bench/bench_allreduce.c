/* bench/bench_allreduce.c: all-reduce bandwidth of f32 tensors through weft's mpi process
 * group against plain MPI_Allreduce on the same buffer, 4 KB .. 256 MB.
 *
 *     mpirun -np 4 build/bench/bench_allreduce [--sizes 4096,1048576] [--iters N] [--rounds R]
 *                                              [--impls auto,mpi]
 *
 * All are in place (weft: wf_dist_all_reduce(SUM); MPI: MPI_IN_PLACE on a duplicated
 * communicator). --impls lists the mpi backend's all_reduce paths to time, each through its
 * own group made with WF_MPI_ALLREDUCE set to it (auto: weft's default choice; weft, rd,
 * ring: weft's own algorithms; mpi: Open MPI's MPI_Iallreduce path), optionally with more
 * settings: "ring+WF_MPI_RING_CHUNK=65536+WF_MPI_RING_MIN=1". Each size runs R rounds
 * of N back-to-back calls per implementation, interleaved, and keeps each one's best round; a
 * call's time is the slowest rank's. GB/s is the algorithm bandwidth (bytes / seconds per
 * call, 1 GB = 1e9 B), as bench/peer_allreduce.py reports torch.distributed's. Rank 0 prints
 * one JSON line per size and path:
 *   {"bench":"allreduce","impl":"weft-mpi-auto","ranks":4,"bytes":4096,"iters":..,"gbps":..,
 *    "baseline":"MPI_Allreduce","baseline_gbps":..,"ratio":..}   (ratio = gbps / baseline_gbps) */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/weft.h"

static double best_round(wf_process_group *pg, MPI_Comm comm, wf_tensor *t, float *buf, int n, int iters, bool raw) {
    MPI_Barrier(comm);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) {
        if (raw) {
            MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm);
        } else if (wf_dist_all_reduce(pg, t, WF_DIST_SUM, NULL) != 0) {
            fprintf(stderr, "wf_dist_all_reduce: %s\n", wf_error_message());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    double dt = (MPI_Wtime() - t0) / iters;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, comm);   /* the slowest rank's */
    return dt;
}

int main(int argc, char **argv) {
    long long sizes[32];
    int nsizes = 0, iters_opt = 0, rounds = 3;
    char impls_arg[256] = "auto,mpi";
    const char *impls[8];
    int nimpls = 0;
    for (long long b = 4096; b <= 256LL << 20; b *= 4) sizes[nsizes++] = b;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *s = strtok(argv[++i], ","); s && nsizes < 32; s = strtok(NULL, ",")) sizes[nsizes++] = atoll(s);
        } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            iters_opt = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--impls") && i + 1 < argc) {
            snprintf(impls_arg, sizeof impls_arg, "%s", argv[++i]);
        } else {
            fprintf(stderr, "usage: mpirun -np N %s [--sizes B1,B2,...] [--iters N] [--rounds R] [--impls auto,mpi,weft,rd,ring]\n", argv[0]);
            return 2;
        }
    }
    for (char *s = strtok(impls_arg, ","); s && nimpls < 8; s = strtok(NULL, ",")) impls[nimpls++] = s;
    wf_process_group *pgs[8] = {0};
    for (int k = 0; k < nimpls; k++) {
        /* "MODE" or "MODE+VAR=VALUE+...": the settings are read when the group is made */
        char spec[256], *vars[8];
        int nv = 0;
        snprintf(spec, sizeof spec, "%s", impls[k]);
        char *plus = strchr(spec, '+');
        if (plus) *plus = 0;
        setenv("WF_MPI_ALLREDUCE", spec, 1);
        for (char *v = plus ? plus + 1 : NULL; v && nv < 8;) {
            char *next = strchr(v, '+'), *eq = strchr(v, '=');
            if (next) *next = 0;
            if (eq) {
                *eq = 0;
                setenv(v, eq + 1, 1);
                vars[nv++] = v;
            }
            v = next ? next + 1 : NULL;
        }
        pgs[k] = wf_dist_init(&(wf_dist_options){.backend = "mpi"});
        unsetenv("WF_MPI_ALLREDUCE");
        for (int i = 0; i < nv; i++) unsetenv(vars[i]);
        if (!pgs[k]) {
            fprintf(stderr, "wf_dist_init: %s\n", wf_error_message());
            return 1;
        }
    }
    wf_process_group *pg = pgs[0];
    int rank = wf_process_group_rank(pg), size = wf_process_group_size(pg);
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    for (int k = 0; k < nsizes; k++) {
        long long bytes = sizes[k];
        int n = (int)(bytes / 4);
        if (n < 1) continue;
        wf_tensor *t = wf_zeros(WF_SHAPE(n), WF_F32);   /* zeros: sums stay finite */
        float *buf = wf_data_ptr(t);
        /* about 0.2 GB moved per round, 2 .. 1000 calls */
        int iters = iters_opt > 0 ? iters_opt : (int)(2e8 / (double)bytes);
        if (iters_opt <= 0) iters = iters < 2 ? 2 : iters > 1000 ? 1000 : iters;
        for (int k = 0; k < nimpls; k++) best_round(pgs[k], comm, t, buf, n, 1, false);   /* warm-up */
        best_round(pg, comm, t, buf, n, 1, true);
        double bw[8], braw = 1e30;
        for (int k = 0; k < nimpls; k++) bw[k] = 1e30;
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < nimpls; k++) {
                double a = best_round(pgs[k], comm, t, buf, n, iters, false);
                if (a < bw[k]) bw[k] = a;
            }
            double b = best_round(pg, comm, t, buf, n, iters, true);
            if (b < braw) braw = b;
        }
        for (int k = 0; k < nimpls && rank == 0; k++) {
            double g = (double)bytes / bw[k] / 1e9, gr = (double)bytes / braw / 1e9;
            printf("{\"bench\":\"allreduce\",\"impl\":\"weft-mpi-%s\",\"ranks\":%d,\"bytes\":%lld,\"iters\":%d,"
                   "\"gbps\":%.4f,\"baseline\":\"MPI_Allreduce\",\"baseline_gbps\":%.4f,\"ratio\":%.4f}\n",
                   impls[k], size, bytes, iters, g, gr, g / gr);
            fflush(stdout);
        }
        wf_tensor_free(t);
    }
    MPI_Comm_free(&comm);
    for (int k = nimpls - 1; k >= 0; k--) wf_process_group_free(pgs[k]);
    return 0;
}
