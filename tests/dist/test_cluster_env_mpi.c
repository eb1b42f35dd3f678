/* tests/dist/test_cluster_env_mpi.c: the Open MPI environment with MPI initialized, run under
 * `mpirun -np 2/3`: the node rank and count come from the ranks' host names (all ranks share
 * this host: node 0 of 1), not from OMPI_COMM_WORLD_NODE_RANK or the rank / local-size guess. */
#include "test_util.h"

#include "weft/dist.h"

#include <mpi.h>

START_TEST(test_nodes_from_hosts) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    wf_cluster_info ci;
    ck_assert_msg(wf_cluster_detect(&ci) == 0, "%s", wf_error_message());
    ck_assert_str_eq(ci.env_name, "mpi");
    ck_assert_int_eq(ci.world_size, size);
    ck_assert_int_eq(ci.global_rank, rank);
    ck_assert_int_eq(ci.local_rank, rank);
    ck_assert_int_eq(ci.node_rank, 0);
    ck_assert_int_eq(ci.num_nodes, 1);
    /* a local size of 1 would make the pre-MPI guess say node = rank, nodes = size: the host
     * names must win (every rank calls this, the Allgather is collective) */
    ck_assert_int_eq(setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "1", 1), 0);
    ck_assert_int_eq(setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1), 0);
    ck_assert_msg(wf_cluster_detect(&ci) == 0, "%s", wf_error_message());
    ck_assert_int_eq(ci.node_rank, 0);
    ck_assert_int_eq(ci.num_nodes, 1);
    ck_assert(wf_launched());
}
END_TEST

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    Suite *s = suite_create("dist_cluster_env_mpi");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_nodes_from_hosts);
    suite_add_tcase(s, tc);
    int rc = tt_run(s);
    MPI_Finalize();
    return rc;
}
