/* tests/dist/test_cluster_env.c: cluster environments detected from variables set by hand
 * (torchrun, SLURM, Open MPI, weft's launcher, local), their precedence, bad values, and the
 * rank -> GPU map check. One process; every test starts from a clean environment.
 *
 * The minimal (embedded) preset runs one process: it detects the same environments in the same
 * order but refuses each job environment by name before reading its values
 * (dist/cluster_env_fill_stub.c). There these tests check that refusal where the full build
 * checks the values read. */
#include "test_util.h"
#include "weft_config.h"

#include "weft/dist.h"

static const char *all_vars[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
    "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NODELIST", "SLURM_JOB_NODELIST",
    "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES",
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    "OMPI_COMM_WORLD_NODE_RANK", "PMIX_RANK",
    "WF_LAUNCH_RANK", "WF_LAUNCH_WORLD_SIZE", "WF_LAUNCH_LOCAL_RANK", "WF_LAUNCH_LOCAL_SIZE",
    "WF_LAUNCH_NODE_RANK", "WF_LAUNCH_NUM_NODES", "WF_LAUNCH_STATUS_DIR",
};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++) unsetenv(all_vars[i]);
}

static void set(const char *name, const char *value) { ck_assert_int_eq(setenv(name, value, 1), 0); }

static void set_torchrun(void) {
    set("RANK", "3");
    set("WORLD_SIZE", "4");
    set("LOCAL_RANK", "1");
    set("LOCAL_WORLD_SIZE", "2");
    set("GROUP_RANK", "1");
    set("MASTER_ADDR", "10.0.0.5");
    set("MASTER_PORT", "29500");
}

static void set_slurm(void) {
    set("SLURM_NTASKS", "4");
    set("SLURM_PROCID", "2");
    set("SLURM_LOCALID", "0");
    set("SLURM_NODEID", "1");
    set("SLURM_NODELIST", "node[1-2]");
    set("SLURM_JOB_ID", "1234567");
    set("SLURM_JOB_NAME", "train");
    set("SLURM_NTASKS_PER_NODE", "2(x2)");
}

static void set_mpi(void) {
    set("OMPI_COMM_WORLD_SIZE", "6");
    set("OMPI_COMM_WORLD_RANK", "4");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "3");
    set("OMPI_COMM_WORLD_NODE_RANK", "1");   /* a per-node process number: must not be used */
}

static void set_weft(void) {
    set("WF_LAUNCH_RANK", "2");
    set("WF_LAUNCH_WORLD_SIZE", "3");
    set("WF_LAUNCH_LOCAL_RANK", "2");
    set("WF_LAUNCH_LOCAL_SIZE", "3");
    set("WF_LAUNCH_NODE_RANK", "0");
    set("WF_LAUNCH_NUM_NODES", "1");
    set("MASTER_ADDR", "127.0.0.1");
    set("MASTER_PORT", "40001");
}

static wf_cluster_info detect_ok(void) {
    wf_cluster_info ci;
    memset(&ci, 0x5a, sizeof ci);
    int rc = wf_cluster_detect(&ci);
    ck_assert_msg(rc == 0, "wf_cluster_detect: %s", wf_error_message());
    return ci;
}

#ifndef WEFT_MINIMAL   /* the preset never reads a job environment's values */
static void detect_fails(const char *text) {
    wf_cluster_info ci;
    ck_assert_int_eq(wf_cluster_detect(&ci), WF_EINVAL);
    ck_assert_error(WF_EINVAL, text);
}
#endif

#ifdef WEFT_MINIMAL
/* The preset's answer to a job environment: WF_ENOTSUP, naming the environment and the preset. */
static void detect_refused(const char *env) {
    wf_cluster_info ci;
    char names[64];
    snprintf(names, sizeof names, "runs under %s (", env);
    ck_assert_int_eq(wf_cluster_detect(&ci), WF_ENOTSUP);
    ck_assert_msg(strstr(wf_error_message(), "the minimal build of weft runs one process only") != NULL,
                  "message '%s' does not name the preset", wf_error_message());
    ck_assert_error(WF_ENOTSUP, names);
}
#endif

/* The environment wf_cluster_detect chooses: described in the full build, refused by name in the
 * minimal preset (which still chooses it, and names it). */
static void expect_env(const char *env) {
#ifdef WEFT_MINIMAL
    detect_refused(env);
#else
    ck_assert_str_eq(detect_ok().env_name, env);
#endif
}

START_TEST(test_local) {
    clear_env();
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "local");
    ck_assert_int_eq(ci.world_size, 1);
    ck_assert_int_eq(ci.global_rank, 0);
    ck_assert_int_eq(ci.local_rank, 0);
    ck_assert_int_eq(ci.local_world_size, 1);
    ck_assert_int_eq(ci.node_rank, 0);
    ck_assert_int_eq(ci.num_nodes, 1);
    ck_assert_str_eq(ci.main_address, "127.0.0.1");
    ck_assert_int_eq(ci.main_port, 0);
    ck_assert(!ci.creates_processes_externally);
    ck_assert(!wf_launched());
    ck_assert_int_eq(wf_cluster_detect(NULL), WF_ENULL);
    wf_clear_error();
}
END_TEST

START_TEST(test_torchrun) {
    clear_env();
    set_torchrun();
    ck_assert(wf_cluster_env_torchrun.detect(&wf_cluster_env_torchrun));
    ck_assert(wf_launched());
#ifdef WEFT_MINIMAL
    detect_refused("torchrun");
#else
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "torchrun");
    ck_assert_int_eq(ci.world_size, 4);
    ck_assert_int_eq(ci.global_rank, 3);
    ck_assert_int_eq(ci.local_rank, 1);
    ck_assert_int_eq(ci.local_world_size, 2);
    ck_assert_int_eq(ci.node_rank, 1);
    ck_assert_int_eq(ci.num_nodes, 2);
    ck_assert_str_eq(ci.main_address, "10.0.0.5");
    ck_assert_int_eq(ci.main_port, 29500);
    ck_assert(ci.creates_processes_externally);
#endif
    /* all five of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are needed */
    unsetenv("MASTER_PORT");
    ck_assert(!wf_cluster_env_torchrun.detect(&wf_cluster_env_torchrun));
    ck_assert_str_eq(detect_ok().env_name, "local");
}
END_TEST

START_TEST(test_torchrun_bad_values) {
    clear_env();
    set_torchrun();
    set("RANK", "abc");
#ifdef WEFT_MINIMAL   /* refused before any value is read: a bad one changes nothing */
    detect_refused("torchrun");
#else
    detect_fails("RANK=\"abc\" is not an integer");
    set("RANK", "4");
    detect_fails("RANK=4 must be below WORLD_SIZE=4");
    set("RANK", "-1");
    detect_fails("RANK=-1 must be >= 0");
    set("RANK", "3");
    set("LOCAL_RANK", "2");
    detect_fails("LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2");
    set("LOCAL_RANK", "1");
    set("LOCAL_WORLD_SIZE", "5");
    detect_fails("LOCAL_WORLD_SIZE=5 is larger than WORLD_SIZE=4");
    set("LOCAL_WORLD_SIZE", "2");
    set("WORLD_SIZE", "0");
    detect_fails("WORLD_SIZE=0 must be >= 1");
    set("WORLD_SIZE", "4");
    set("GROUP_RANK", "2");
    detect_fails("GROUP_RANK=2 must be below");
    set("GROUP_RANK", "1");
    set("MASTER_PORT", "70000");
    detect_fails("MASTER_PORT=70000");
    set("MASTER_PORT", "29500x");
    detect_fails("MASTER_PORT=\"29500x\" is not an integer");
#endif
}
END_TEST

START_TEST(test_slurm) {
    clear_env();
    set_slurm();
    ck_assert(wf_launched());
#ifdef WEFT_MINIMAL
    detect_refused("slurm");
#else
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "slurm");
    ck_assert_int_eq(ci.world_size, 4);
    ck_assert_int_eq(ci.global_rank, 2);
    ck_assert_int_eq(ci.local_rank, 0);
    ck_assert_int_eq(ci.local_world_size, 2);
    ck_assert_int_eq(ci.node_rank, 1);
    ck_assert_int_eq(ci.num_nodes, 2);
    ck_assert_str_eq(ci.main_address, "node1");          /* the first host of the node list */
    ck_assert_int_eq(ci.main_port, 15000 + 4567);        /* Lightning: the job id's last 4 digits */
    ck_assert(ci.creates_processes_externally);
    set("MASTER_ADDR", "head");
    set("MASTER_PORT", "1234");
    ci = detect_ok();
    ck_assert_str_eq(ci.main_address, "head");
    ck_assert_int_eq(ci.main_port, 1234);
#endif
    /* an interactive allocation is not a job of ranks */
    set("SLURM_JOB_NAME", "bash");
    ck_assert(!wf_cluster_env_slurm.detect(&wf_cluster_env_slurm));
    ck_assert_str_eq(detect_ok().env_name, "local");
    set("SLURM_JOB_NAME", "interactive");
    ck_assert(!wf_launched());
}
END_TEST

/* a SLURM job (set_slurm) on the nodes of list, and nothing else in the environment */
static void slurm_on(const char *list) {
    clear_env();
    set_slurm();
    set("SLURM_NODELIST", list);
}

#ifndef WEFT_MINIMAL
static void check_nodelist(const char *list, const char *first, int count) {
    slurm_on(list);
    unsetenv("SLURM_NTASKS_PER_NODE");
    set("SLURM_NODEID", "0");
    wf_cluster_info ci = detect_ok();
    ck_assert_msg(!strcmp(ci.main_address, first), "%s: first host %s, expected %s", list, ci.main_address, first);
    ck_assert_msg(ci.num_nodes == count, "%s: %d hosts, expected %d", list, ci.num_nodes, count);
}
#endif

START_TEST(test_slurm_nodelists) {
#ifdef WEFT_MINIMAL   /* never parsed: the preset refuses SLURM first, whatever the list */
    const char *lists[] = { "a,b", "gpu[07-09,12]", "n[1-", ",a" };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        slurm_on(lists[i]);
        detect_refused("slurm");
    }
#else
    check_nodelist("a,b", "a", 2);
    check_nodelist("gpu[07-09,12]", "gpu07", 4);
    check_nodelist("x[3]-ib,y", "x3-ib", 2);
    check_nodelist("solo", "solo", 1);
    check_nodelist("n[1-3,5],m[10-11]", "n1", 6);
    const char *bad[] = { "n[1-", "n[a-b]", "n[3-1]", ",a" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slurm_on(bad[i]);
        detect_fails("SLURM_NODELIST");
    }
#endif
}
END_TEST

START_TEST(test_slurm_bad_values) {
    clear_env();
    set_slurm();
    set("SLURM_PROCID", "4");
#ifdef WEFT_MINIMAL   /* refused before any value is read */
    detect_refused("slurm");
#else
    detect_fails("SLURM_PROCID=4 must be below SLURM_NTASKS=4");
    set("SLURM_PROCID", "two");
    detect_fails("SLURM_PROCID=\"two\" is not an integer");
    set("SLURM_PROCID", "2");
    set("SLURM_JOB_ID", "12a");
    detect_fails("SLURM_JOB_ID=\"12a\" is not a number");
    set("SLURM_JOB_ID", "99");
    ck_assert_int_eq(detect_ok().main_port, 15099);
    set("SLURM_NODEID", "2");
    detect_fails("SLURM_NODEID=2 must be below");
    set("SLURM_NODEID", "1");
    set("SLURM_NTASKS_PER_NODE", "x");
    detect_fails("SLURM_NTASKS_PER_NODE=\"x\"");
    set("SLURM_NTASKS_PER_NODE", "2");
    set("SLURM_LOCALID", "2");
    detect_fails("SLURM_LOCALID=2 must be below SLURM_NTASKS_PER_NODE=2");
    set("SLURM_LOCALID", "0");
    unsetenv("SLURM_NODELIST");
    detect_fails("SLURM_NODELIST is not set");
#endif
}
END_TEST

START_TEST(test_mpi) {
    clear_env();
    set_mpi();
    ck_assert(wf_launched());
#ifdef WEFT_MINIMAL
    detect_refused("mpi");
    set("OMPI_COMM_WORLD_RANK", "6");   /* refused before any value is read */
    detect_refused("mpi");
#else
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "mpi");
    ck_assert_int_eq(ci.world_size, 6);
    ck_assert_int_eq(ci.global_rank, 4);
    ck_assert_int_eq(ci.local_rank, 1);
    ck_assert_int_eq(ci.local_world_size, 3);
    /* MPI is not initialized here: node = rank / local size (mpirun's default mapping), not
     * OMPI_COMM_WORLD_NODE_RANK */
    ck_assert_int_eq(ci.node_rank, 1);
    ck_assert_int_eq(ci.num_nodes, 2);
    ck_assert_str_eq(ci.main_address, "127.0.0.1");
    ck_assert_int_eq(ci.main_port, 0);
    set("MASTER_PORT", "5555");
    ck_assert_int_eq(detect_ok().main_port, 5555);
    set("OMPI_COMM_WORLD_RANK", "6");
    detect_fails("OMPI_COMM_WORLD_RANK=6 must be below OMPI_COMM_WORLD_SIZE=6");
    set("OMPI_COMM_WORLD_RANK", "4");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "z");
    detect_fails("OMPI_COMM_WORLD_LOCAL_SIZE=\"z\" is not an integer");
    set("OMPI_COMM_WORLD_LOCAL_SIZE", "3");
    set("OMPI_COMM_WORLD_LOCAL_RANK", "3");
    detect_fails("OMPI_COMM_WORLD_LOCAL_RANK=3 must be below OMPI_COMM_WORLD_LOCAL_SIZE=3");
#endif
}
END_TEST

START_TEST(test_weft) {
    clear_env();
    set_weft();
    ck_assert(wf_launched());
#ifdef WEFT_MINIMAL
    detect_refused("weft");
    set("WF_LAUNCH_RANK", "3");   /* refused before any value is read */
    detect_refused("weft");
#else
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "weft");
    ck_assert_int_eq(ci.world_size, 3);
    ck_assert_int_eq(ci.global_rank, 2);
    ck_assert_int_eq(ci.local_rank, 2);
    ck_assert_int_eq(ci.local_world_size, 3);
    ck_assert_int_eq(ci.node_rank, 0);
    ck_assert_int_eq(ci.num_nodes, 1);
    ck_assert_int_eq(ci.main_port, 40001);
    ck_assert(ci.creates_processes_externally);
    set("WF_LAUNCH_RANK", "3");
    detect_fails("WF_LAUNCH_RANK=3 must be below WF_LAUNCH_WORLD_SIZE=3");
    set("WF_LAUNCH_RANK", "1");
    set("WF_LAUNCH_NODE_RANK", "1");
    detect_fails("WF_LAUNCH_NODE_RANK=1 must be below WF_LAUNCH_NUM_NODES=1");
    set("WF_LAUNCH_NODE_RANK", "0");
    set("WF_LAUNCH_LOCAL_SIZE", "-2");
    detect_fails("WF_LAUNCH_LOCAL_SIZE=-2 must be >= 1");
#endif
}
END_TEST

START_TEST(test_precedence) {
    /* torchrun before SLURM before Open MPI */
    clear_env();
    set_mpi();
    set_slurm();
    set_torchrun();
    expect_env("torchrun");
    unsetenv("RANK");
    expect_env("slurm");
    unsetenv("SLURM_NTASKS");
    expect_env("mpi");
    /* the status directory of an mpirun launch does not make a weft environment */
    set("WF_LAUNCH_STATUS_DIR", "/tmp/x");
    expect_env("mpi");
    /* a rank that weft's launcher started itself is described by weft's variables, even
     * inside a SLURM job or beside torchrun's names (which the launcher also sets) */
    clear_env();
    set_slurm();
    set_torchrun();
    set_weft();
#ifdef WEFT_MINIMAL
    detect_refused("weft");
#else
    wf_cluster_info ci = detect_ok();
    ck_assert_str_eq(ci.env_name, "weft");
    ck_assert_int_eq(ci.global_rank, 2);
    ck_assert_int_eq(ci.world_size, 3);
#endif
    /* a bad value of the chosen environment is an error, not a fall-through to the next */
    clear_env();
    set_slurm();
    set_torchrun();
    set("WORLD_SIZE", "many");
#ifdef WEFT_MINIMAL
    detect_refused("torchrun");
#else
    detect_fails("WORLD_SIZE=\"many\"");
#endif
}
END_TEST

START_TEST(test_device_map) {
    int nodes[] = { 0, 0, 1, 1 };
    int devs[] = { 0, 1, 0, 1 };
    ck_assert_int_eq(wf_dist_check_device_map(nodes, devs, 4), 0);
    ck_assert_int_eq(wf_dist_check_device_map(NULL, NULL, 0), 0);
    int same[] = { 0, 0, 0, 1 };
    int one_node[] = { 0, 0, 0, 0 };
    ck_assert_int_eq(wf_dist_check_device_map(one_node, same, 4), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "ranks 0 and 1 both use cuda:0 on node 0: NCCL cannot run two ranks on one GPU");
    int devs2[] = { 0, 1, 2, 1 };
    ck_assert_int_eq(wf_dist_check_device_map(one_node, devs2, 4), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "ranks 1 and 3 both use cuda:1 on node 0");
    int neg[] = { 0, -1 };
    ck_assert_int_eq(wf_dist_check_device_map(nodes, neg, 2), WF_EINVAL);
    ck_assert_error(WF_EINVAL, "rank 1 has device cuda:-1");
    ck_assert_int_eq(wf_dist_check_device_map(NULL, devs, 2), WF_ENULL);
    wf_clear_error();
    ck_assert_int_eq(wf_dist_check_device_map(nodes, devs, -1), WF_EINVAL);
    wf_clear_error();
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist_cluster_env");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_local);
    tcase_add_test(tc, test_torchrun);
    tcase_add_test(tc, test_torchrun_bad_values);
    tcase_add_test(tc, test_slurm);
    tcase_add_test(tc, test_slurm_nodelists);
    tcase_add_test(tc, test_slurm_bad_values);
    tcase_add_test(tc, test_mpi);
    tcase_add_test(tc, test_weft);
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_device_map);
    suite_add_tcase(s, tc);
    return tt_run(s);
}
