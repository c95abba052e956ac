/*  test_procs.c — the process manager (broker/zh_procs.c) driven directly,
    without sockets.

    The events callbacks record every transition, every STOP and every
    bulk-stop summary; since there is no backend here, a STOP is delivered
    as SIGUSR1 to the child (its script traps it and exits 0) or, for a
    thread proc, as a byte on a pipe its function reads. A test loop reaps,
    ticks and reads the output pipes with a real clock until a condition
    holds or a bounded deadline passes. Children are /bin/sh -c scripts.

    Scenarios: lifecycle (spawn → starting → ready → STOP → stopped{0});
    the child's environment and signal mask; escalation STOP → SIGTERM →
    SIGKILL for a child that ignores both (killed{9} after about 2 ×
    timeout); READY_TIMEOUT (failed, killed, reaped, tail kept); no ready
    timeout with 0; exec failures; exit code 3; SIGSEGV; refused
    transitions; INVALID_NAME, PROC_EXISTS and a name reused after its end;
    stdout and stderr in the tail, the 50-line ring, an over-long line cut;
    idempotent stop; kill; bulk stop of 100 with at most 8 in flight; two
    bulk stops at once; thread procs (STOP → return 5, kill refused, a
    thread that ignores STOP is waited for); destroy leaves no child alive;
    a child dies with its SIGKILLed parent (PDEATHSIG).
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "zh_log.h"
#include "zh_procs.h"

#define BACKEND_IPC    "ipc:///tmp/zh-test-procs/backend"
#define BACKEND_INPROC "inproc://zh-test-backend"
#define HOST           "tcp://127.0.0.1:7100"
#define HEARTBEAT_MS   250

//  A child that exits 0 on STOP (SIGUSR1 here) and says "up" once its
//  trap is set; `wait` returns at once on a trapped signal.
#define STOPPABLE                                                                                  \
    "trap 'kill $! 2>/dev/null; exit 0' USR1; echo up; while :; do sleep 1 & wait $!; done"

//  ---------------------------------------------------------------------
//  Fixture: the manager and what its callbacks saw

typedef struct {
    char name[ZH_LABEL_MAX + 1];
    zh_pstate_t from, to;
    int64_t at;
} transition_t;

typedef struct {
    char name[ZH_LABEL_MAX + 1];
    char reason[64];
    int64_t timeout_ms;
    int64_t at;
} stop_t;

typedef struct {
    void *job;
    size_t attempted, stopped, failed;
} done_t;

typedef struct {
    zh_procs_t *procs;
    transition_t trans[1024];
    size_t n_trans;
    stop_t stops[512];
    size_t n_stops;
    done_t done[8];
    size_t n_done;
    bool usr1_on_stop;  //  send_stop: SIGUSR1 to a process proc
    int thread_stop_fd; //  send_stop: a byte here for a thread proc
    int in_flight;      //  procs between their STOP and their end
    int max_in_flight;
    char *log_buf;
    size_t log_size;
    FILE *log;
} fixture_t;

static fixture_t fx;

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_on_state (void *arg, zh_proc_t *proc, zh_pstate_t old_state)
{
    fixture_t *f = (fixture_t *)arg;
    assert_true (f->n_trans < sizeof f->trans / sizeof f->trans[0]);
    transition_t *t = &f->trans[f->n_trans++];
    snprintf (t->name, sizeof t->name, "%s", proc->name);
    t->from = old_state;
    t->to = proc->state;
    t->at = s_now ();
    if (zh_pstate_terminal (proc->state) && proc->stop_stage >= 1) f->in_flight--;
}

static void
s_send_stop (void *arg, zh_proc_t *proc, const char *reason, int64_t timeout_ms)
{
    fixture_t *f = (fixture_t *)arg;
    assert_true (f->n_stops < sizeof f->stops / sizeof f->stops[0]);
    stop_t *s = &f->stops[f->n_stops++];
    snprintf (s->name, sizeof s->name, "%s", proc->name);
    snprintf (s->reason, sizeof s->reason, "%s", reason);
    s->timeout_ms = timeout_ms;
    s->at = s_now ();
    if (!zh_pstate_terminal (proc->state) && ++f->in_flight > f->max_in_flight)
        f->max_in_flight = f->in_flight;
    if (proc->launch == ZH_LAUNCH_THREAD && f->thread_stop_fd >= 0) {
        ssize_t rc = write (f->thread_stop_fd, "s", 1);
        (void)rc;
    } else if (proc->launch == ZH_LAUNCH_PROCESS && f->usr1_on_stop)
        kill (proc->pid, SIGUSR1);
}

static void
s_on_done (void *arg, void *job, size_t attempted, size_t stopped, size_t failed)
{
    fixture_t *f = (fixture_t *)arg;
    assert_true (f->n_done < sizeof f->done / sizeof f->done[0]);
    f->done[f->n_done++] = (done_t){job, attempted, stopped, failed};
}

static zh_procs_t *
s_procs_new (void)
{
    zh_procs_events_t events = {.on_state = s_on_state,
                                .send_stop = s_send_stop,
                                .on_stop_all_done = s_on_done,
                                .arg = &fx};
    return zh_procs_new (NULL, BACKEND_IPC, BACKEND_INPROC, HOST, HEARTBEAT_MS, events);
}

static int
setup (void **state)
{
    memset (&fx, 0, sizeof fx);
    fx.usr1_on_stop = true;
    fx.thread_stop_fd = -1;
    fx.log = open_memstream (&fx.log_buf, &fx.log_size);
    if (!fx.log) return -1;
    zh_log_set_stream (fx.log);
    zh_log_set_level (ZH_LOG_INFO);
    fx.procs = s_procs_new ();
    return fx.procs ? 0 : -1;
}

static int
teardown (void **state)
{
    zh_procs_destroy (&fx.procs);
    zh_log_set_stream (NULL);
    fclose (fx.log);
    free (fx.log_buf);
    return 0;
}

static const char *
s_log (void)
{
    fflush (fx.log);
    return fx.log_buf ? fx.log_buf : "";
}

//  ---------------------------------------------------------------------
//  The loop: reap, tick, read the pipes, until cond holds or max_ms

typedef bool (cond_fn) (void *arg);

static void
s_turn (int64_t max_wait_ms)
{
    int64_t now = s_now ();
    zh_procs_reap (fx.procs, now);
    int64_t due = zh_procs_tick (fx.procs, now);
    struct pollfd item = {zh_procs_poll_fd (fx.procs), POLLIN, 0};
    //  No signalfd here: exits are seen by polling every 10 ms at most.
    int64_t timeout = max_wait_ms < 10 ? max_wait_ms : 10;
    if (due >= 0 && due < timeout) timeout = due;
    if (poll (&item, 1, (int)timeout) > 0) zh_procs_poll (fx.procs);
}

static bool
s_wait_for (cond_fn *cond, void *arg, int64_t max_ms)
{
    int64_t deadline = s_now () + max_ms;
    while (!cond (arg)) {
        int64_t left = deadline - s_now ();
        if (left <= 0) return false;
        s_turn (left);
    }
    return true;
}

//  Keep the loop running for ms (nothing expected to change).
static bool
s_never (void *arg)
{
    return false;
}

static void
s_run_for (int64_t ms)
{
    s_wait_for (s_never, NULL, ms);
}

static bool
s_is_terminal (void *arg)
{
    return zh_pstate_terminal (((zh_proc_t *)arg)->state);
}

static bool
s_is_reaped (void *arg)
{
    return ((zh_proc_t *)arg)->reaped;
}

typedef struct {
    zh_proc_t *proc;
    const char *text;
} tail_probe_t;

static bool
s_tail_has (void *arg)
{
    tail_probe_t *probe = (tail_probe_t *)arg;
    char tail[8192];
    zh_proc_tail (probe->proc, tail, sizeof tail);
    return strstr (tail, probe->text) != NULL;
}

static void
s_wait_end (zh_proc_t *proc, int64_t max_ms)
{
    assert_true (s_wait_for (s_is_terminal, proc, max_ms));
}

static void
s_wait_output (zh_proc_t *proc, const char *text)
{
    tail_probe_t probe = {proc, text};
    assert_true (s_wait_for (s_tail_has, &probe, 3000));
}

static zh_proc_t *
s_spawn_sh (const char *name, const char *script, char *const env[], int64_t ready_ms)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    zh_error_t err;
    zh_proc_t *proc = zh_procs_spawn (fx.procs, name, argv, env, ready_ms, s_now (), &err);
    if (!proc) print_error ("spawn %s: %s\n", name, err.reason);
    assert_non_null (proc);
    return proc;
}

//  The transitions recorded for name, as "from>to from>to …".
static const char *
s_history (const char *name)
{
    static char history[1024];
    size_t len = 0;
    history[0] = 0;
    for (size_t i = 0; i < fx.n_trans && len < sizeof history - 32; i++)
        if (strcmp (fx.trans[i].name, name) == 0)
            len += (size_t)snprintf (history + len, sizeof history - len, "%s%s>%s", len ? " " : "",
                                     zh_pstate_name (fx.trans[i].from),
                                     zh_pstate_name (fx.trans[i].to));
    return history;
}

static size_t
s_stops_of (const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < fx.n_stops; i++)
        n += strcmp (fx.stops[i].name, name) == 0;
    return n;
}

//  Dead, or a zombie nobody reaps yet (a reparented grandchild).
static bool
s_pid_gone (pid_t pid)
{
    if (kill (pid, 0) != 0 && errno == ESRCH) return true;
    char path[64], stat[256] = "";
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file) return true;
    size_t n = fread (stat, 1, sizeof stat - 1, file);
    fclose (file);
    stat[n] = 0;
    const char *paren = strrchr (stat, ')');
    return paren && paren[1] == ' ' && paren[2] == 'Z';
}

static bool
s_pid_gone_within (pid_t pid, int64_t max_ms)
{
    int64_t deadline = s_now () + max_ms;
    while (!s_pid_gone (pid)) {
        if (s_now () >= deadline) return false;
        usleep (10 * 1000);
    }
    return true;
}

//  ---------------------------------------------------------------------
//  Lifecycle

//  spawn → starting; READY → ready; stop → STOP sent, stopping; the child
//  exits 0 on it → stopped{0}, one line per change in the log.
static void
test_lifecycle_stop_exits_zero (void **state)
{
    assert_string_equal (zh_pstate_name (ZH_PS_STARTING), "starting");
    assert_string_equal (zh_pstate_name (ZH_PS_FAILED), "failed");
    zh_proc_t *proc = s_spawn_sh ("worker", STOPPABLE, NULL, 5000);
    assert_int_equal (proc->state, ZH_PS_STARTING);
    assert_int_equal (proc->launch, ZH_LAUNCH_PROCESS);
    assert_true (proc->pid > 0);
    assert_string_equal (proc->proc_addr, "worker@" HOST);
    assert_ptr_equal (zh_procs_lookup (fx.procs, "worker", 6), proc);
    assert_int_equal (zh_procs_live_count (fx.procs), 1);
    //  The ready deadline is the next one.
    int64_t due = zh_procs_tick (fx.procs, s_now ());
    assert_true (due > 4000 && due <= 5000);
    s_wait_output (proc, "up");

    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), 0);
    assert_int_equal (proc->state, ZH_PS_READY);
    assert_int_equal (zh_procs_tick (fx.procs, s_now ()), -1); //  no deadline left

    zh_procs_stop (fx.procs, proc, 2000, "test over", s_now ());
    assert_int_equal (proc->state, ZH_PS_STOPPING);
    assert_int_equal (fx.n_stops, 1);
    assert_string_equal (fx.stops[0].name, "worker");
    assert_string_equal (fx.stops[0].reason, "test over");
    assert_int_equal (fx.stops[0].timeout_ms, 2000);

    s_wait_end (proc, 3000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (proc->exit_code, 0);
    assert_true (proc->reaped);
    assert_int_equal (proc->stop_stage, 1); //  no escalation was needed
    assert_string_equal (s_history ("worker"), "starting>ready ready>stopping stopping>stopped");
    assert_int_equal (zh_procs_live_count (fx.procs), 0);
    assert_non_null (strstr (s_log (), "proc name=worker from=stopping to=stopped pid="));
    assert_non_null (strstr (s_log (), "exit_code=0"));
    assert_non_null (strstr (s_log (), "output proc=worker stream=stdout line=up"));
}

//  The child sees ZHOST_* (set last: a spawn env cannot override them),
//  its own variables over the broker's, the broker's others, and an
//  empty signal mask although the broker blocks signals.
static void
test_child_environment (void **state)
{
    setenv ("ZH_TEST_OVERRIDE", "from-broker", 1);
    setenv ("ZH_TEST_KEEP", "kept", 1);
    char *env[] = {"ZH_TEST_CUSTOM=hello world", "ZH_TEST_OVERRIDE=from-spawn", "ZHOST_PROC=forged",
                   NULL};
    zh_proc_t *proc = s_spawn_sh ("envtest",
                                  "echo \"PROC=$ZHOST_PROC\"; echo \"BACKEND=$ZHOST_BACKEND\"; "
                                  "echo \"HOST=$ZHOST_HOST\"; echo \"HB=$ZHOST_HEARTBEAT_MS\"; "
                                  "echo \"CUSTOM=$ZH_TEST_CUSTOM\"; "
                                  "echo \"OVERRIDE=$ZH_TEST_OVERRIDE\"; "
                                  "echo \"KEEP=$ZH_TEST_KEEP\"; "
                                  "env | grep -c '^ZHOST_PROC=' | sed 's/^/COUNT=/'",
                                  env, 5000);
    unsetenv ("ZH_TEST_OVERRIDE");
    unsetenv ("ZH_TEST_KEEP");
    s_wait_end (proc, 3000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (proc->exit_code, 0);
    char tail[4096];
    zh_proc_tail (proc, tail, sizeof tail);
    assert_string_equal (tail, "PROC=envtest@" HOST "\n"
                               "BACKEND=" BACKEND_IPC "\n"
                               "HOST=" HOST "\n"
                               "HB=250\n"
                               "CUSTOM=hello world\n"
                               "OVERRIDE=from-spawn\n"
                               "KEEP=kept\n"
                               "COUNT=1");
}

//  The program exec'd directly: no signal blocked and none ignored,
//  although the broker blocks some (for its signalfd) and ignores one.
static void
test_child_signal_mask (void **state)
{
    sigset_t block, old;
    sigemptyset (&block);
    sigaddset (&block, SIGTERM);
    sigaddset (&block, SIGCHLD);
    pthread_sigmask (SIG_BLOCK, &block, &old);
    signal (SIGUSR2, SIG_IGN);
    char *argv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
    zh_error_t err;
    zh_proc_t *proc = zh_procs_spawn (fx.procs, "masks", argv, NULL, 5000, s_now (), &err);
    signal (SIGUSR2, SIG_DFL);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    assert_non_null (proc);
    s_wait_end (proc, 3000);
    char tail[256];
    zh_proc_tail (proc, tail, sizeof tail);
    assert_string_equal (tail, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000");
}

//  ---------------------------------------------------------------------
//  Escalation and deadlines

//  A child that ignores STOP and SIGTERM: STOP, SIGTERM at +timeout,
//  SIGKILL at +2 × timeout → killed{9}.
static void
test_escalation_to_sigkill (void **state)
{
    fx.usr1_on_stop = false;
    zh_proc_t *proc = s_spawn_sh (
        "stubborn", "trap '' TERM; echo armed; while :; do sleep 0.05; done", NULL, 5000);
    s_wait_output (proc, "armed");
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), 0);
    int64_t began = s_now ();
    zh_procs_stop (fx.procs, proc, 300, "escalate", began);
    assert_int_equal (fx.n_stops, 1);
    s_wait_end (proc, 3000);
    int64_t took = s_now () - began;
    assert_int_equal (proc->state, ZH_PS_KILLED);
    assert_int_equal (proc->signal, SIGKILL);
    assert_int_equal (proc->stop_stage, 3);
    assert_true (took >= 600);
    assert_true (took < 1100);
    assert_string_equal (s_history ("stubborn"), "starting>ready ready>stopping stopping>killed");
    assert_non_null (strstr (s_log (), "stop-escalate proc=stubborn stage=SIGTERM"));
    assert_non_null (strstr (s_log (), "stop-escalate proc=stubborn stage=SIGKILL"));
}

//  No READY in time: failed{READY_TIMEOUT} at the deadline, the group
//  killed, the child reaped later without another transition, tail kept.
static void
test_ready_timeout (void **state)
{
    int64_t began = s_now ();
    zh_proc_t *proc =
        s_spawn_sh ("sleepy", "echo waiting; while :; do sleep 0.05; done", NULL, 300);
    s_wait_end (proc, 2000);
    int64_t took = s_now () - began;
    assert_int_equal (proc->state, ZH_PS_FAILED);
    assert_string_equal (proc->reason_word, "READY_TIMEOUT");
    assert_string_equal (proc->reason, "no READY within 300 ms");
    assert_true (took >= 300 && took < 800);
    assert_true (s_wait_for (s_is_reaped, proc, 2000));
    s_run_for (50);
    assert_int_equal (proc->state, ZH_PS_FAILED);
    assert_string_equal (s_history ("sleepy"), "starting>failed");
    assert_true (s_pid_gone (proc->pid));
    char tail[256];
    zh_proc_tail (proc, tail, sizeof tail);
    assert_string_equal (tail, "waiting");
    //  Too late now: READY is refused.
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), -1);
    assert_int_equal (zh_procs_kill (fx.procs, proc), -1);
}

//  ready_timeout 0 waits forever: no deadline, still starting.
static void
test_ready_timeout_zero_waits (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("patient", STOPPABLE, NULL, 0);
    assert_int_equal (zh_procs_tick (fx.procs, s_now ()), -1);
    s_run_for (400);
    assert_int_equal (proc->state, ZH_PS_STARTING);
    assert_int_equal (fx.n_trans, 0);
    assert_int_equal (zh_procs_kill (fx.procs, proc), 0);
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_KILLED);
}

//  ---------------------------------------------------------------------
//  Ends

//  PM-9: only the newest terminal_keep ended procs stay listed; the older
//  are forgotten (and freed), so new names do not grow the table forever.
static bool
s_all_ended (void *arg)
{
    (void)arg;
    for (zh_proc_t *p = zh_procs_first (fx.procs); p; p = zh_procs_next (fx.procs))
        if (!zh_pstate_terminal (p->state)) return false;
    return true;
}

static void
test_ended_procs_are_forgotten_past_the_keep (void **state)
{
    zh_procs_set_terminal_keep (fx.procs, 3);
    for (int i = 0; i < 6; i++) {
        char name[8];
        snprintf (name, sizeof name, "k%d", i);
        s_spawn_sh (name, "exit 0", NULL, 5000);
    }
    assert_true (s_wait_for (s_all_ended, NULL, 5000));
    s_run_for (20);
    const char *want[] = {"k3", "k4", "k5"};
    size_t n = 0;
    for (zh_proc_t *p = zh_procs_first (fx.procs); p; p = zh_procs_next (fx.procs)) {
        assert_true (n < 3);
        assert_string_equal (p->name, want[n]);
        n++;
    }
    assert_int_equal (n, 3);
    assert_null (zh_procs_lookup (fx.procs, "k0", 2));
    zh_procs_set_terminal_keep (fx.procs, ZH_PROCS_TERMINAL_KEEP);
}

//  exec failures: SPAWN_FAILED with the errno text; nothing is listed.
static void
test_spawn_failed (void **state)
{
    char *missing[] = {"zh-no-such-program", NULL};
    zh_error_t err;
    assert_null (zh_procs_spawn (fx.procs, "ghost", missing, NULL, 1000, s_now (), &err));
    assert_string_equal (err.word, "SPAWN_FAILED");
    assert_int_equal (err.code, 0);
    assert_string_equal (err.reason, "zh-no-such-program: No such file or directory");
    char path[] = "/tmp/zh-test-procs-XXXXXX";
    int fd = mkstemp (path); //  mode 0600: not executable, even for root
    assert_true (fd >= 0);
    close (fd);
    char *not_exec[] = {path, NULL};
    assert_null (zh_procs_spawn (fx.procs, "ghost", not_exec, NULL, 1000, s_now (), &err));
    unlink (path);
    char want[128];
    snprintf (want, sizeof want, "%s: Permission denied", path);
    assert_string_equal (err.reason, want);
    char *empty[] = {NULL};
    assert_null (zh_procs_spawn (fx.procs, "ghost", empty, NULL, 1000, s_now (), &err));
    assert_string_equal (err.word, "SPAWN_FAILED");
    assert_null (zh_procs_lookup (fx.procs, "ghost", 5));
    assert_null (zh_procs_first (fx.procs));
    assert_int_equal (fx.n_trans, 0);
}

//  A crash before READY: stopped{3}, its stderr in the tail.
static void
test_exit_code_before_ready (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("crash", "echo 'cannot start' >&2; exit 3", NULL, 5000);
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (proc->exit_code, 3);
    assert_string_equal (s_history ("crash"), "starting>stopped");
    char tail[256];
    zh_proc_tail (proc, tail, sizeof tail);
    assert_string_equal (tail, "cannot start");
}

static void
test_killed_by_signal (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("segv", "kill -SEGV $$", NULL, 5000);
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_KILLED);
    assert_int_equal (proc->signal, SIGSEGV);
    assert_non_null (strstr (s_log (), "to=killed pid="));
    assert_non_null (strstr (s_log (), "signal=11 core="));
}

//  PM-1: transitions outside the lifecycle are refused and logged.
static void
test_refused_transitions (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("strict", STOPPABLE, NULL, 5000);
    s_wait_output (proc, "up");
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), 0);
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), -1);
    assert_int_equal (proc->state, ZH_PS_READY);
    assert_non_null (strstr (s_log (), "transition-refused proc=strict from=ready to=ready"));
    zh_procs_stop (fx.procs, proc, 2000, "bye", s_now ());
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), -1); //  stopping → ready
    assert_int_equal (proc->state, ZH_PS_STOPPING);
    s_wait_end (proc, 3000);
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), -1);
    zh_procs_stop (fx.procs, proc, 2000, "again", s_now ()); //  no-op on a terminal proc
    assert_int_equal (zh_procs_kill (fx.procs, proc), -1);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (fx.n_stops, 1);
    assert_string_equal (s_history ("strict"), "starting>ready ready>stopping stopping>stopped");
}

//  ---------------------------------------------------------------------
//  Names (PM-2)

//  word: the agent error word; reason_prefix: how the sentence starts.
static void
s_expect_refused (const char *name, const char *word, const char *reason_prefix)
{
    char *argv[] = {"/bin/true", NULL};
    zh_error_t err;
    assert_null (zh_procs_spawn (fx.procs, name, argv, NULL, 1000, s_now (), &err));
    if (!err.word || strcmp (err.word, word) != 0 ||
        strncmp (err.reason, reason_prefix, strlen (reason_prefix)) != 0)
        fail_msg ("spawn '%s': got %s \"%s\", want %s \"%s…\"", name, err.word ? err.word : "-",
                  err.reason, word, reason_prefix);
}

static void
test_names (void **state)
{
    s_expect_refused ("Bad", "INVALID_NAME", "'Bad' is not a label");
    s_expect_refused ("", "INVALID_NAME", "");
    s_expect_refused ("a-", "INVALID_NAME", "");
    s_expect_refused ("service", "INVALID_NAME", "'service' is reserved");
    s_expect_refused ("local", "INVALID_NAME", "'local' is reserved");
    assert_null (zh_procs_first (fx.procs));

    zh_proc_t *first = s_spawn_sh ("dup", STOPPABLE, NULL, 5000);
    char want[128];
    snprintf (want, sizeof want, "'dup' is starting (pid %d)", (int)first->pid);
    s_expect_refused ("dup", "PROC_EXISTS", want);
    s_wait_output (first, "up");
    zh_procs_ready (fx.procs, first, s_now ());
    snprintf (want, sizeof want, "'dup' is ready (pid %d)", (int)first->pid);
    s_expect_refused ("dup", "PROC_EXISTS", want);
    zh_procs_stop (fx.procs, first, 2000, "reuse", s_now ());
    s_expect_refused ("dup", "PROC_EXISTS", "'dup' is stopping");
    s_wait_end (first, 3000);
    pid_t first_pid = first->pid;

    //  Terminal: the name may be spawned again; the new one replaces it.
    zh_proc_t *second = s_spawn_sh ("dup", "echo second; exit 4", NULL, 5000);
    assert_int_equal (second->state, ZH_PS_STARTING);
    assert_true (second->pid != first_pid);
    assert_ptr_equal (zh_procs_lookup (fx.procs, "dup", 3), second);
    size_t listed = 0;
    for (zh_proc_t *p = zh_procs_first (fx.procs); p; p = zh_procs_next (fx.procs))
        listed++;
    assert_int_equal (listed, 1);
    s_wait_end (second, 2000);
    assert_int_equal (second->exit_code, 4);
    zh_procs_forget (fx.procs, second);
    assert_null (zh_procs_lookup (fx.procs, "dup", 3));
}

//  ---------------------------------------------------------------------
//  Output

static void
test_output_both_streams (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("talker", "echo to-stdout; echo to-stderr >&2", NULL, 5000);
    s_wait_end (proc, 2000);
    tail_probe_t out = {proc, "to-stdout"}, err = {proc, "to-stderr"};
    assert_true (s_tail_has (&out));
    assert_true (s_tail_has (&err));
    assert_int_equal (zh_proc_tail_count (proc), 2);
    for (size_t i = 0; i < 2; i++) //  each kept line knows its stream
        assert_string_equal (zh_proc_tail_stream (proc, i),
                             strcmp (zh_proc_tail_line (proc, i), "to-stderr") == 0 ? "stderr"
                                                                                    : "stdout");
    assert_non_null (strstr (s_log (), "output proc=talker stream=stderr line=to-stderr"));
}

//  The tail keeps the last ZH_TAIL_LINES lines; zh_proc_tail gives the
//  newest lines that fit in the buffer.
static void
test_tail_keeps_last_lines (void **state)
{
    zh_proc_t *proc = s_spawn_sh (
        "chatty", "i=0; while [ $i -lt 110 ]; do echo line$i; i=$((i+1)); done", NULL, 5000);
    s_wait_end (proc, 3000);
    assert_int_equal (zh_proc_tail_count (proc), ZH_TAIL_LINES);
    assert_string_equal (zh_proc_tail_line (proc, 0), "line10");
    assert_string_equal (zh_proc_tail_stream (proc, 0), "stdout");
    assert_null (zh_proc_tail_stream (proc, ZH_TAIL_LINES));
    char tail[4096];
    zh_proc_tail (proc, tail, sizeof tail);
    assert_non_null (strstr (tail, "\nline109"));
    assert_null (strstr (tail, "line9\n"));
    char small[16];
    assert_int_equal (zh_proc_tail (proc, small, sizeof small), 15);
    assert_string_equal (small, "line108\nline109");
}

//  A line longer than ZH_LINE_MAX is cut there; its rest follows.
static void
test_long_line_cut (void **state)
{
    zh_proc_t *proc =
        s_spawn_sh ("verbose", "head -c 3000 /dev/zero | tr '\\000' x; echo; echo end", NULL, 5000);
    s_wait_end (proc, 3000);
    assert_int_equal (zh_proc_tail_count (proc), 4);
    size_t lens[3] = {ZH_LINE_MAX, ZH_LINE_MAX, 3000 - 2 * ZH_LINE_MAX};
    for (size_t i = 0; i < 3; i++) {
        const char *line = zh_proc_tail_line (proc, i);
        assert_int_equal (strlen (line), lens[i]);
        assert_int_equal (strspn (line, "x"), lens[i]);
    }
    assert_string_equal (zh_proc_tail_line (proc, 3), "end");
}

//  ---------------------------------------------------------------------
//  Stop and kill

//  Stop twice: one STOP, one end, and the second call changes nothing.
static void
test_stop_idempotent (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("twice", STOPPABLE, NULL, 5000);
    s_wait_output (proc, "up");
    zh_procs_stop (fx.procs, proc, 2000, "first", s_now ());
    int64_t deadline = proc->stop_deadline;
    zh_procs_stop (fx.procs, proc, 50, "second", s_now ());
    assert_int_equal (proc->stop_deadline, deadline);
    assert_int_equal (fx.n_stops, 1);
    s_wait_end (proc, 3000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_string_equal (s_history ("twice"), "starting>stopping stopping>stopped");
}

static void
test_kill (void **state)
{
    zh_proc_t *proc = s_spawn_sh ("victim", STOPPABLE, NULL, 5000);
    s_wait_output (proc, "up");
    zh_procs_ready (fx.procs, proc, s_now ());
    assert_int_equal (zh_procs_kill (fx.procs, proc), 0);
    assert_int_equal (proc->state, ZH_PS_STOPPING);
    assert_int_equal (fx.n_stops, 0);
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_KILLED);
    assert_int_equal (proc->signal, SIGKILL);
    assert_int_equal (zh_procs_kill (fx.procs, proc), -1);
}

//  ---------------------------------------------------------------------
//  Bulk stop (PM-5)

#define BULK 100

typedef struct {
    zh_proc_t **procs;
    size_t count;
} procs_probe_t;

static bool
s_all_up (void *arg)
{
    procs_probe_t *probe = (procs_probe_t *)arg;
    for (size_t i = 0; i < probe->count; i++) {
        tail_probe_t tail = {probe->procs[i], "up"};
        if (!s_tail_has (&tail)) return false;
    }
    return true;
}

static bool
s_jobs_done (void *arg)
{
    return fx.n_done >= (size_t)(intptr_t)arg;
}

static void
test_bulk_stop_max_in_flight (void **state)
{
    zh_proc_t *procs[BULK];
    for (size_t i = 0; i < BULK; i++) {
        char name[16];
        snprintf (name, sizeof name, "bulk%zu", i);
        procs[i] = s_spawn_sh (name, STOPPABLE, NULL, 0);
    }
    procs_probe_t probe = {procs, BULK};
    assert_true (s_wait_for (s_all_up, &probe, 10000));
    int job_tag = 0;
    zh_procs_stop_all (fx.procs, 5000, 8, "bulk", s_now (), &job_tag);
    assert_int_equal (fx.n_stops, 8);
    assert_int_equal (fx.n_done, 0);
    assert_true (s_wait_for (s_jobs_done, (void *)1, 15000));
    assert_int_equal (fx.n_done, 1);
    assert_ptr_equal (fx.done[0].job, &job_tag);
    assert_int_equal (fx.done[0].attempted, BULK);
    assert_int_equal (fx.done[0].stopped, BULK);
    assert_int_equal (fx.done[0].failed, 0);
    assert_int_equal (fx.n_stops, BULK);
    assert_true (fx.max_in_flight <= 8);
    assert_int_equal (fx.max_in_flight, 8);
    for (size_t i = 0; i < BULK; i++) {
        assert_int_equal (procs[i]->state, ZH_PS_STOPPED);
        assert_int_equal (procs[i]->exit_code, 0);
    }
    //  Nothing left to stop: answered before stop_all returns.
    zh_procs_stop_all (fx.procs, 5000, 8, "again", s_now (), NULL);
    assert_int_equal (fx.n_done, 2);
    assert_int_equal (fx.done[1].attempted, 0);
}

//  Two bulk stops at once: each proc stopped once, both jobs see all end;
//  a proc that fails (READY_TIMEOUT) counts as failed.
static void
test_bulk_stop_two_jobs (void **state)
{
    zh_proc_t *procs[6];
    for (size_t i = 0; i < 6; i++) {
        char name[16];
        snprintf (name, sizeof name, "pair%zu", i);
        procs[i] = s_spawn_sh (name, STOPPABLE, NULL, 0);
    }
    procs_probe_t probe = {procs, 6};
    assert_true (s_wait_for (s_all_up, &probe, 5000));
    fx.usr1_on_stop = false; //  they end only when the test says so
    int job_a = 0, job_b = 0;
    zh_procs_stop_all (fx.procs, 5000, 2, "a", s_now (), &job_a);
    assert_int_equal (fx.n_stops, 2);
    zh_procs_stop_all (fx.procs, 5000, 3, "b", s_now (), &job_b);
    assert_int_equal (fx.n_stops, 3); //  a's two count as b's in flight
    fx.usr1_on_stop = true;
    for (size_t i = 0; i < fx.n_stops; i++)
        kill (zh_procs_lookup (fx.procs, fx.stops[i].name, strlen (fx.stops[i].name))->pid,
              SIGUSR1);
    assert_true (s_wait_for (s_jobs_done, (void *)2, 10000));
    assert_int_equal (fx.n_stops, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal (s_stops_of (procs[i]->name), 1);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal (fx.done[i].attempted, 6);
        assert_int_equal (fx.done[i].stopped, 6);
        assert_int_equal (fx.done[i].failed, 0);
    }
    assert_true ((fx.done[0].job == &job_a && fx.done[1].job == &job_b) ||
                 (fx.done[0].job == &job_b && fx.done[1].job == &job_a));

    //  A proc that fails while it waits for its turn counts as failed:
    //  holder takes the one slot and ends only when told; meanwhile late
    //  misses its ready timeout.
    zh_proc_t *holder = s_spawn_sh ("holder", STOPPABLE, NULL, 0);
    s_wait_output (holder, "up");
    zh_proc_t *late = s_spawn_sh ("late", "while :; do sleep 0.05; done", NULL, 300);
    fx.usr1_on_stop = false;
    fx.n_done = 0;
    zh_procs_stop_all (fx.procs, 5000, 1, "c", s_now (), NULL);
    assert_int_equal (holder->state, ZH_PS_STOPPING);
    assert_int_equal (late->state, ZH_PS_STARTING);
    s_wait_end (late, 2000);
    assert_int_equal (late->state, ZH_PS_FAILED);
    assert_int_equal (fx.n_done, 0);
    kill (holder->pid, SIGUSR1);
    assert_true (s_wait_for (s_jobs_done, (void *)1, 3000));
    assert_int_equal (fx.done[0].attempted, 2);
    assert_int_equal (fx.done[0].stopped, 1);
    assert_int_equal (fx.done[0].failed, 1);
    assert_int_equal (s_stops_of ("late"), 0);
}

//  ---------------------------------------------------------------------
//  Thread procs (PM-3)

typedef struct {
    int stop_fd; //  read end: a byte means STOP
    int exit_code;
    char proc_addr[256], backend[256], host[256];
    int64_t heartbeat_ms;
} thread_arg_t;

static int
s_thread_main (void *zmq_ctx, const char *proc_addr, const char *backend, const char *host,
               int64_t heartbeat_ms, void *arg)
{
    thread_arg_t *self = (thread_arg_t *)arg;
    snprintf (self->proc_addr, sizeof self->proc_addr, "%s", proc_addr);
    snprintf (self->backend, sizeof self->backend, "%s", backend);
    snprintf (self->host, sizeof self->host, "%s", host);
    self->heartbeat_ms = heartbeat_ms;
    char byte;
    while (read (self->stop_fd, &byte, 1) < 0 && errno == EINTR)
        ;
    return self->exit_code;
}

static void
test_thread_proc (void **state)
{
    int stop[2];
    assert_int_equal (pipe (stop), 0);
    fx.thread_stop_fd = stop[1];
    thread_arg_t arg = {.stop_fd = stop[0], .exit_code = 5};
    zh_error_t err;
    zh_proc_t *proc =
        zh_procs_spawn_thread (fx.procs, "inproc", s_thread_main, &arg, 2000, s_now (), &err);
    assert_non_null (proc);
    assert_int_equal (proc->launch, ZH_LAUNCH_THREAD);
    assert_int_equal (proc->pid, getpid ());
    assert_int_equal (proc->state, ZH_PS_STARTING);
    assert_null (
        zh_procs_spawn_thread (fx.procs, "inproc", s_thread_main, &arg, 2000, s_now (), &err));
    assert_string_equal (err.word, "PROC_EXISTS");
    assert_int_equal (zh_procs_ready (fx.procs, proc, s_now ()), 0);
    assert_int_equal (zh_procs_kill (fx.procs, proc), -1);
    assert_int_equal (proc->state, ZH_PS_READY);

    zh_procs_stop (fx.procs, proc, 1000, "done", s_now ());
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (proc->exit_code, 5);
    assert_string_equal (arg.proc_addr, "inproc@" HOST);
    assert_string_equal (arg.backend, BACKEND_INPROC);
    assert_string_equal (arg.host, HOST);
    assert_int_equal (arg.heartbeat_ms, HEARTBEAT_MS);
    assert_string_equal (s_history ("inproc"), "starting>ready ready>stopping stopping>stopped");
    close (stop[0]);
    close (stop[1]);
}

//  A thread that ignores STOP cannot be forced: after the timeout it is
//  logged and waited for, still stopping, until it returns.
static void
test_thread_ignores_stop (void **state)
{
    int stop[2];
    assert_int_equal (pipe (stop), 0);
    thread_arg_t arg = {.stop_fd = stop[0], .exit_code = 9};
    zh_error_t err;
    zh_proc_t *proc =
        zh_procs_spawn_thread (fx.procs, "deaf", s_thread_main, &arg, 0, s_now (), &err);
    assert_non_null (proc);
    zh_procs_ready (fx.procs, proc, s_now ());
    zh_procs_stop (fx.procs, proc, 100, "please", s_now ());
    s_run_for (400);
    assert_int_equal (proc->state, ZH_PS_STOPPING);
    assert_non_null (strstr (s_log (), "stop-unforced proc=deaf"));
    assert_int_equal (zh_procs_tick (fx.procs, s_now ()), -1); //  nothing more to do
    ssize_t rc = write (stop[1], "s", 1);
    assert_int_equal (rc, 1);
    s_wait_end (proc, 2000);
    assert_int_equal (proc->state, ZH_PS_STOPPED);
    assert_int_equal (proc->exit_code, 9);
    close (stop[0]);
    close (stop[1]);
}

//  ---------------------------------------------------------------------
//  No child outlives the manager

static void
test_destroy_kills_children (void **state)
{
    zh_proc_t *procs[3];
    procs[0] = s_spawn_sh ("d0", "exec sleep 30", NULL, 0);
    procs[1] =
        s_spawn_sh ("d1", "trap '' TERM; echo armed; while :; do sleep 0.05; done", NULL, 5000);
    procs[2] = s_spawn_sh ("d2", "sleep 30 & echo \"child=$!\"; wait", NULL, 5000);
    s_wait_output (procs[1], "armed");
    s_wait_output (procs[2], "child=");
    char tail[256];
    zh_proc_tail (procs[2], tail, sizeof tail);
    pid_t grandchild = (pid_t)atoi (strstr (tail, "child=") + 6);
    assert_true (grandchild > 0);
    pid_t pids[3] = {procs[0]->pid, procs[1]->pid, procs[2]->pid};
    int64_t began = s_now ();
    zh_procs_destroy (&fx.procs);
    assert_null (fx.procs);
    assert_true (s_now () - began < 1000);
    for (size_t i = 0; i < 3; i++) {
        errno = 0;
        assert_int_equal (kill (pids[i], 0), -1);
        assert_int_equal (errno, ESRCH);
    }
    assert_true (s_pid_gone_within (grandchild, 1000)); //  the whole group
}

//  A broker-like parent that is SIGKILLed takes its children with it.
static void
test_pdeathsig (void **state)
{
    int report[2];
    assert_int_equal (pipe (report), 0);
    pid_t helper = fork ();
    assert_true (helper >= 0);
    if (helper == 0) {
        zh_procs_events_t none = {0};
        zh_procs_t *procs = zh_procs_new (NULL, BACKEND_IPC, BACKEND_INPROC, HOST, 1000, none);
        char *argv[] = {"sleep", "30", NULL};
        zh_proc_t *proc = procs ? zh_procs_spawn (procs, "orphan", argv, NULL, 0, 0, NULL) : NULL;
        pid_t pid = proc ? proc->pid : -1;
        ssize_t rc = write (report[1], &pid, sizeof pid);
        (void)rc;
        while (true)
            pause ();
    }
    close (report[1]);
    pid_t child = -1;
    assert_int_equal (read (report[0], &child, sizeof child), (ssize_t)sizeof child);
    close (report[0]);
    assert_true (child > 0);
    assert_false (s_pid_gone (child));
    kill (helper, SIGKILL);
    waitpid (helper, NULL, 0);
    assert_true (s_pid_gone_within (child, 1000));
}

int
main (void)
{
    //  A SIGSEGV test must not leave core files behind.
    struct rlimit no_core = {0, 0};
    setrlimit (RLIMIT_CORE, &no_core);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_lifecycle_stop_exits_zero, setup, teardown),
        cmocka_unit_test_setup_teardown (test_child_environment, setup, teardown),
        cmocka_unit_test_setup_teardown (test_child_signal_mask, setup, teardown),
        cmocka_unit_test_setup_teardown (test_escalation_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown (test_ready_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown (test_ready_timeout_zero_waits, setup, teardown),
        cmocka_unit_test_setup_teardown (test_spawn_failed, setup, teardown),
        cmocka_unit_test_setup_teardown (test_ended_procs_are_forgotten_past_the_keep, setup,
                                         teardown),
        cmocka_unit_test_setup_teardown (test_exit_code_before_ready, setup, teardown),
        cmocka_unit_test_setup_teardown (test_killed_by_signal, setup, teardown),
        cmocka_unit_test_setup_teardown (test_refused_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown (test_names, setup, teardown),
        cmocka_unit_test_setup_teardown (test_output_both_streams, setup, teardown),
        cmocka_unit_test_setup_teardown (test_tail_keeps_last_lines, setup, teardown),
        cmocka_unit_test_setup_teardown (test_long_line_cut, setup, teardown),
        cmocka_unit_test_setup_teardown (test_stop_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown (test_kill, setup, teardown),
        cmocka_unit_test_setup_teardown (test_bulk_stop_max_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown (test_bulk_stop_two_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown (test_thread_proc, setup, teardown),
        cmocka_unit_test_setup_teardown (test_thread_ignores_stop, setup, teardown),
        cmocka_unit_test_setup_teardown (test_destroy_kills_children, setup, teardown),
        cmocka_unit_test_setup_teardown (test_pdeathsig, setup, teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
