/*  zh_launch.c — starting a proc: a program or a thread (see
    zh_launch.h).

    Where it sits: below zh_procs.c, which calls zh_launch_process and
    zh_launch_thread_new at a spawn and keeps what they return.
*/
#include "zh_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zh_log.h"

extern char **environ;

//  ---------------------------------------------------------------------
//  Process launcher

static const char *s_zhost_keys[] = {"ZHOST_PROC", "ZHOST_BACKEND", "ZHOST_HOST",
                                     "ZHOST_HEARTBEAT_MS", "ZHOST_BATCH_MAX_BYTES"};
#define S_ZHOST_KEYS 5

//  Same KEY in two "KEY=VALUE" (or bare KEY) strings.
static bool
s_same_key (const char *a, const char *b)
{
    size_t la = strcspn (a, "="), lb = strcspn (b, "=");
    return la == lb && memcmp (a, b, la) == 0;
}

static bool
s_key_in (const char *entry, char *const list[], size_t from)
{
    for (size_t i = from; list && list[i]; i++)
        if (s_same_key (entry, list[i])) return true;
    return false;
}

static bool
s_zhost_key (const char *entry)
{
    for (size_t i = 0; i < S_ZHOST_KEYS; i++)
        if (s_same_key (entry, s_zhost_keys[i])) return true;
    return false;
}

static size_t
s_list_count (char *const list[])
{
    size_t n = 0;
    while (list && list[n])
        n++;
    return n;
}

//  A malloc'd formatted string, or NULL.
static char *
s_printf (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *text = NULL;
    if (vasprintf (&text, format, args) < 0) text = NULL;
    va_end (args);
    return text;
}

//  The child's environment: the broker's, with the spawn's env over it
//  (same KEY replaced, the last of repeated keys wins), then the ZHOST_*
//  variables. owned[] gets the S_ZHOST_KEYS strings made here (the rest is
//  borrowed); free with s_env_free.
static char **
s_env_build (const zh_launch_env_t *spec, char *const env[], char *owned[S_ZHOST_KEYS])
{
    size_t n_base = s_list_count (environ), n_env = s_list_count (env);
    char **envp = (char **)calloc (n_base + n_env + S_ZHOST_KEYS + 1, sizeof (char *));
    if (!envp) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < n_base; i++)
        if (!s_key_in (environ[i], env, 0) && !s_zhost_key (environ[i])) envp[n++] = environ[i];
    for (size_t i = 0; i < n_env; i++)
        if (strchr (env[i], '=') && !s_key_in (env[i], env, i + 1) && !s_zhost_key (env[i]))
            envp[n++] = env[i];
    owned[0] = s_printf ("ZHOST_PROC=%s", spec->proc_addr);
    owned[1] = s_printf ("ZHOST_BACKEND=%s", spec->backend);
    owned[2] = s_printf ("ZHOST_HOST=%s", spec->host);
    owned[3] = s_printf ("ZHOST_HEARTBEAT_MS=%lld", (long long)spec->heartbeat_ms);
    owned[4] = s_printf ("ZHOST_BATCH_MAX_BYTES=%lld", (long long)spec->batch_max_bytes);
    for (size_t i = 0; i < S_ZHOST_KEYS; i++) {
        if (!owned[i]) {
            free (envp);
            return NULL;
        }
        envp[n++] = owned[i];
    }
    return envp;
}

static void
s_env_free (char **envp, char *owned[S_ZHOST_KEYS])
{
    for (size_t i = 0; i < S_ZHOST_KEYS; i++)
        free (owned[i]);
    free (envp);
}

//  A CLOEXEC pipe whose ends are >= 3 (so dup2 onto 0..2 in the child
//  never clobbers one of them).
static int
s_pipe (int fds[2])
{
    if (pipe2 (fds, O_CLOEXEC) != 0) return -1;
    for (int i = 0; i < 2; i++)
        if (fds[i] < 3) {
            int high = fcntl (fds[i], F_DUPFD_CLOEXEC, 3);
            close (fds[i]);
            fds[i] = high;
        }
    if (fds[0] < 0 || fds[1] < 0) {
        if (fds[0] >= 0) close (fds[0]);
        if (fds[1] >= 0) close (fds[1]);
        return -1;
    }
    return 0;
}

static void
s_close_pair (int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) close (fds[i]);
    fds[0] = fds[1] = -1;
}

//  In the child: report errno to the parent over the exec-status pipe.
static void __attribute__ ((noreturn)) s_child_fail (int status_w)
{
    int code = errno;
    ssize_t rc = write (status_w, &code, sizeof code);
    (void)rc;
    _exit (127);
}

//  In the child, between fork and exec: async-signal-safe calls only.
static void __attribute__ ((noreturn))
s_child (pid_t parent, int out_w, int err_w, int status_w, char *const argv[], char *const envp[],
         const cpu_set_t *cpus)
{
    setpgid (0, 0);
    if (cpus) sched_setaffinity (0, sizeof *cpus, cpus); //  not the broker's --cpu
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent) _exit (127); //  the broker died before PDEATHSIG was armed
    struct sigaction dfl;
    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset (&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        sigaction (sig, &dfl, NULL); //  SIGKILL, SIGSTOP and glibc's own refuse: fine
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    int null_fd = open ("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2 (null_fd, 0) < 0 || dup2 (out_w, 1) < 0 || dup2 (err_w, 2) < 0)
        s_child_fail (status_w);
    close_range (3, ~0U, CLOSE_RANGE_CLOEXEC); //  fds the broker forgot to mark
    execvpe (argv[0], argv, envp);
    s_child_fail (status_w);
}

//  The child's errno if exec failed, 0 once it exec'd (the pipe closed).
static int
s_exec_status (int status_r)
{
    int code = 0;
    ssize_t n;
    do
        n = read (status_r, &code, sizeof code);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof code ? code : 0;
}

static int
s_fork_failed (const char *argv0, int code, zh_error_t *err)
{
    return zh_error_word (err, "SPAWN_FAILED", "%.100s: %s", argv0, strerror (code));
}

//  fork + execvpe with the pipes (argv and envp built before the fork).
int
zh_launch_process (const zh_launch_env_t *spec, char *const argv[], char *const env[], pid_t *pid_p,
                   int *out_fd, int *err_fd, zh_error_t *err)
{
    if (!argv || !argv[0] || !argv[0][0])
        return zh_error_word (err, "SPAWN_FAILED", "'%s': empty argv", spec->name);
    char *owned[S_ZHOST_KEYS] = {NULL};
    char **envp = s_env_build (spec, env, owned);
    if (!envp) {
        s_env_free (NULL, owned);
        return s_fork_failed (argv[0], ENOMEM, err);
    }
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, status[2] = {-1, -1};
    if (s_pipe (out) != 0 || s_pipe (errp) != 0 || s_pipe (status) != 0) {
        int code = errno;
        s_close_pair (out);
        s_close_pair (errp);
        s_close_pair (status);
        s_env_free (envp, owned);
        return s_fork_failed (argv[0], code, err);
    }
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) s_child (parent, out[1], errp[1], status[1], argv, envp, spec->cpus);
    int fork_errno = errno;
    close (out[1]);
    close (errp[1]);
    close (status[1]);
    s_env_free (envp, owned);
    int code = pid < 0 ? fork_errno : s_exec_status (status[0]);
    close (status[0]);
    if (code != 0) {
        if (pid > 0)
            while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
                ;
        close (out[0]);
        close (errp[0]);
        return s_fork_failed (argv[0], code, err);
    }
    fcntl (out[0], F_SETFL, fcntl (out[0], F_GETFL) | O_NONBLOCK);
    fcntl (errp[0], F_SETFL, fcntl (errp[0], F_GETFL) | O_NONBLOCK);
    *pid_p = pid;
    *out_fd = out[0];
    *err_fd = errp[0];
    return 0;
}

//  ---------------------------------------------------------------------
//  Thread launcher

//  A thread proc's state, shared by the launcher's owner and the thread:
//  the last of the two to let go frees it.
struct _zh_launch_thread_t {
    pthread_t tid;         //  the thread
    int done_fd;           //  eventfd: written when fn returned
    zh_thread_main_fn *fn; //  what it runs
    void *arg;             //  fn's argument
    void *zmq_ctx;         //  the broker's context
    char *proc_addr;       //  ZHOST_PROC
    char *backend;         //  the inproc backend
    char *host;            //  the advertised frontend
    int64_t heartbeat_ms;  //  ZHOST_HEARTBEAT_MS
    int exit_code;         //  fn's return value, once done
    atomic_bool done;      //  fn returned
    atomic_int refs;       //  shares: the owner's and the thread's
};

static void
s_thread_release (zh_launch_thread_t *thread)
{
    if (atomic_fetch_sub (&thread->refs, 1) != 1) return;
    if (thread->done_fd >= 0) close (thread->done_fd);
    free (thread->proc_addr);
    free (thread->backend);
    free (thread->host);
    free (thread);
}

static void *
s_thread_run (void *arg)
{
    zh_launch_thread_t *thread = (zh_launch_thread_t *)arg;
    thread->exit_code = thread->fn (thread->zmq_ctx, thread->proc_addr, thread->backend,
                                    thread->host, thread->heartbeat_ms, thread->arg);
    atomic_store (&thread->done, true);
    uint64_t one = 1;
    ssize_t rc = write (thread->done_fd, &one, sizeof one);
    (void)rc;
    s_thread_release (thread);
    return NULL;
}

static zh_launch_thread_t *
s_thread_new (const zh_launch_env_t *spec, void *zmq_ctx, zh_thread_main_fn *fn, void *arg)
{
    zh_launch_thread_t *thread = (zh_launch_thread_t *)calloc (1, sizeof (zh_launch_thread_t));
    if (!thread) return NULL;
    thread->done_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    thread->fn = fn;
    thread->arg = arg;
    thread->zmq_ctx = zmq_ctx;
    thread->proc_addr = strdup (spec->proc_addr);
    thread->backend = strdup (spec->backend);
    thread->host = strdup (spec->host);
    thread->heartbeat_ms = spec->heartbeat_ms;
    atomic_init (&thread->done, false);
    atomic_init (&thread->refs, 2); //  the manager's and the thread's
    if (thread->done_fd < 0 || !thread->proc_addr || !thread->backend || !thread->host) {
        atomic_store (&thread->refs, 1);
        s_thread_release (thread);
        return NULL;
    }
    return thread;
}

zh_launch_thread_t *
zh_launch_thread_new (const zh_launch_env_t *spec, void *zmq_ctx, zh_thread_main_fn *fn, void *arg,
                      zh_error_t *err)
{
    zh_launch_thread_t *thread = fn ? s_thread_new (spec, zmq_ctx, fn, arg) : NULL;
    if (!thread) {
        zh_error_word (err, "SPAWN_FAILED", "'%s': %s", spec->name,
                       fn ? "out of memory" : "no thread function");
        return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    if (spec->cpus) pthread_attr_setaffinity_np (&attr, sizeof *spec->cpus, spec->cpus);
    int rc = pthread_create (&thread->tid, &attr, s_thread_run, thread);
    pthread_attr_destroy (&attr);
    if (rc != 0) {
        atomic_store (&thread->refs, 1);
        s_thread_release (thread);
        zh_error_word (err, "SPAWN_FAILED", "'%s': pthread_create: %s", spec->name, strerror (rc));
        return NULL;
    }
    return thread;
}

int
zh_launch_thread_fd (zh_launch_thread_t *self)
{
    return self->done_fd;
}

bool
zh_launch_thread_join (zh_launch_thread_t **self_p, int *exit_code)
{
    zh_launch_thread_t *thread = *self_p;
    uint64_t value;
    ssize_t rc = read (thread->done_fd, &value, sizeof value);
    (void)rc;
    if (!atomic_load (&thread->done)) return false;
    pthread_join (thread->tid, NULL);
    *exit_code = thread->exit_code;
    s_thread_release (thread);
    *self_p = NULL;
    return true;
}

void
zh_launch_thread_abandon (zh_launch_thread_t **self_p, const char *name)
{
    zh_launch_thread_t *thread = *self_p;
    if (!thread) return;
    if (atomic_load (&thread->done))
        pthread_join (thread->tid, NULL);
    else {
        zh_warn ("thread-detached", "proc=%s note=\"still running at shutdown\"", name);
        pthread_detach (thread->tid);
    }
    s_thread_release (thread);
    *self_p = NULL;
}
