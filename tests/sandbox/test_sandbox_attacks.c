/* test_sandbox_attacks: the attack suite, one check group per attack, run at the tier
 * given as argv[1] (1 = namespaces, 2 = seccomp without namespaces). Each attack must be
 * contained, classified with the right status, leave no process of the slot uid behind,
 * and leave the next run working. Tier 1 is skipped (exit 77) where the kernel refuses
 * namespaces. Needs python3 (the sandbox's interpreter), cc and sh. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "sandbox/sandbox_cases.h"
#include "test.h"

static int tier;
static int can_run_c;  /* a compiler, and (tier 2) a work dir under /tmp that allows exec */

static SandboxResult run_lang(SandboxLang lang, const char *code, double timeout, long mem, size_t cap,
                              const char *const *args, int nargs) {
    SandboxConfig cfg = {.lang = lang, .code = code, .timeout_s = timeout, .memory_mb = mem,
                         .output_cap = cap, .tier = tier, .args = args, .nargs = nargs};
    SandboxResult r;
    Err err = {0};
    if (sandbox_run(&cfg, &r, &err) < 0) {
        fprintf(stderr, "sandbox_run: %s\n", err.msg);
        memset(&r, 0, sizeof r);
        r.status = SANDBOX_ERROR;
    }
    return r;
}

static SandboxResult run_py(const char *code, double timeout) {
    return run_lang(SANDBOX_PYTHON, code, timeout, 256, 1 << 16, NULL, 0);
}

/* Processes on the host still owned by the slot's uid. */
static int slot_procs(void) {
    unsigned uid = sandbox_slot_uid(0);
    if (uid == (unsigned)geteuid()) return 0;  // not root: no slot uid to count by
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) {
            unsigned u;
            if (sscanf(line, "Uid:\t%u", &u) == 1) {
                if (u == uid) n++;
                break;
            }
        }
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* After every attack: nothing of the slot is left and a plain run still works. */
static void check_clean(const char *attack) {
    for (int i = 0; i < 50 && slot_procs(); i++) usleep(10000);  // SIGKILL delivery is async
    CHECK(slot_procs() == 0, "%s: %d processes of the slot uid left behind", attack, slot_procs());
    SandboxResult r = run_py("print('next')\n", 5);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "next\n"), "%s: the next run is %s (%s) out=%s",
          attack, sandbox_status_name(r.status), r.message, r.out);
    sandbox_result_free(&r);
}

#define EXPECT(r, st, attack)                                                                            \
    CHECK((r).status == (st), "%s: status %s, expected %s (%s) stderr=%.300s", attack,                   \
          sandbox_status_name((r).status), sandbox_status_name(st), (r).message, (r).err ? (r).err : "")

static void test_basics(void) {
    SandboxResult r;
    const char *args[] = {"a b", "c"};
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = "import sys\nprint(sys.argv[1:], input())\n",
                         .stdin_data = "hello\n", .stdin_len = 6, .args = args, .nargs = 2, .tier = tier};
    CHECK(sandbox_run(&cfg, &r, NULL) == 0, "run");
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "['a b', 'c'] hello\n"), "stdin+args: %s %s", r.out, r.err);
    CHECK(tier == 1 ? !strcmp(r.isolation, "namespaces") : !strncmp(r.isolation, "seccomp", 7), "isolation %s", r.isolation);
    sandbox_result_free(&r);
    r = run_py("raise ValueError('boom')\n", 5);
    EXPECT(r, SANDBOX_RUNTIME_ERROR, "exception");
    CHECK(r.exit_code == 1 && strstr(r.err, "ValueError: boom"), "exception: exit %d", r.exit_code);
    sandbox_result_free(&r);
    // An uncaught exception's traceback reads as `python3 main.py` would print it.
    r = run_lang(SANDBOX_PYTHON, "def f(x):\n    raise ValueError('bad %d' % x)\n\nf(3)\n", 5, 256, 4096, NULL, 0);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && strstr(r.err, "Traceback (most recent call last):\n  File \"main.py\", line 4, "
          "in <module>\n    f(3)\n  File \"main.py\", line 2, in f\n    raise ValueError('bad %d' % x)\nValueError: bad 3\n"),
          "traceback: %s", r.err);
    sandbox_result_free(&r);
    r = run_lang(SANDBOX_PYTHON, "x = (1 +\n", 5, 256, 4096, NULL, 0);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && strstr(r.err, "File \"main.py\", line 1") && strstr(r.err, "SyntaxError"),
          "syntax error: %s", r.err);
    sandbox_result_free(&r);
    r = run_lang(SANDBOX_SHELL, "echo \"$1-$2\"; exit 3\n", 5, 256, 4096, args, 2);
    CHECK(r.status == SANDBOX_RUNTIME_ERROR && r.exit_code == 3 && !strcmp(r.out, "a b-c\n"), "shell: %s exit %d %s",
          sandbox_status_name(r.status), r.exit_code, r.out);
    sandbox_result_free(&r);
    if (can_run_c) {
        r = run_lang(SANDBOX_C, "#include <stdio.h>\nint main(int c, char **v){printf(\"%s %d\\n\", v[1], c); return 0;}\n",
                     20, 512, 4096, args, 2);
        CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "a b 3\n"), "C: %s %s %s %s", sandbox_status_name(r.status),
              r.message, r.out, r.err);
        sandbox_result_free(&r);
        r = run_lang(SANDBOX_C, "int main(void) { return syntax error; }\n", 20, 512, 4096, NULL, 0);
        CHECK(r.status == SANDBOX_RUNTIME_ERROR && strstr(r.message, "compil"), "C compile error: %s %s",
              sandbox_status_name(r.status), r.message);
        sandbox_result_free(&r);
    }
    check_clean("basics");
}

static int no_landlock(const char *attack) {
    SandboxResult r = run_py("pass\n", 5);
    int none = tier == 2 && !strcmp(r.isolation, "seccomp");
    sandbox_result_free(&r);
    if (none) printf("skipped %s: tier 2 without Landlock cannot hide host files\n", attack);
    return none;
}

static void test_fork_bomb(void) {
    if (geteuid() != 0) {
        printf("skipped fork/thread bombs: not root, so no slot uid and no RLIMIT_NPROC\n");
        return;
    }
    SandboxResult r = run_py("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", 2);
    EXPECT(r, SANDBOX_TIMEOUT, "fork bomb");
    CHECK(r.wall_ms < 8000, "fork bomb: wall %ld ms", r.wall_ms);  // limit 2 s: a loose bound, for loaded machines
    sandbox_result_free(&r);
    check_clean("fork bomb");
}

static void test_thread_bomb(void) {
    if (geteuid() != 0) return;
    SandboxResult r = run_py("import threading, time\nwhile True:\n"
                             "    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n", 5);
    EXPECT(r, SANDBOX_RUNTIME_ERROR, "thread bomb");
    CHECK(strstr(r.err, "can't start new thread") != NULL, "thread bomb: %.200s", r.err);
    sandbox_result_free(&r);
    check_clean("thread bomb");
}

static void test_memory_bomb(void) {
    SandboxResult r = run_py("x = bytearray(8 << 30)\n", 5);
    EXPECT(r, SANDBOX_MEMORY, "memory bomb (one block)");
    sandbox_result_free(&r);
    r = run_py("l = []\nwhile True:\n    l.append(bytearray(1 << 20))\n", 10);
    EXPECT(r, SANDBOX_MEMORY, "memory bomb (growing)");
    sandbox_result_free(&r);
    // C has no MemoryError: touching more than the limit fails the allocation.
    if (can_run_c) {
        r = run_lang(SANDBOX_C, "#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\nint main(void){"
                     "for(;;){char*p=malloc(1<<20); if(!p){perror(\"malloc\"); return 1;} memset(p,1,1<<20);}}\n",
                     20, 128, 4096, NULL, 0);
        EXPECT(r, SANDBOX_MEMORY, "memory bomb (C)");
        sandbox_result_free(&r);
    }
    check_clean("memory bomb");
}

static void test_cpu_and_sleep(void) {
    SandboxResult r = run_py("while True:\n    pass\n", 1);
    EXPECT(r, SANDBOX_TIMEOUT, "cpu loop");
    CHECK(r.wall_ms >= 900 && r.wall_ms < 6000, "cpu loop: wall %ld", r.wall_ms);
    sandbox_result_free(&r);
    r = run_py("import time\ntime.sleep(60)\n", 1);
    EXPECT(r, SANDBOX_TIMEOUT, "sleep");
    CHECK(r.wall_ms < 6000 && r.cpu_ms < 500, "sleep: wall %ld cpu %ld", r.wall_ms, r.cpu_ms);
    sandbox_result_free(&r);
    check_clean("cpu loop / sleep");
}

static void test_output(void) {
    SandboxResult r = run_py("while True:\n    print('x' * 1000)\n", 10);
    EXPECT(r, SANDBOX_OUTPUT_LIMIT, "endless stdout");
    CHECK(r.out_len == 1 << 16 && r.out_truncated, "endless stdout: kept %zu bytes", r.out_len);
    sandbox_result_free(&r);
    r = run_py("import sys\nwhile True:\n    sys.stderr.write('e' * 1000)\n", 10);
    EXPECT(r, SANDBOX_OUTPUT_LIMIT, "endless stderr");
    sandbox_result_free(&r);
    r = run_py("f = open('big', 'w')\nwhile True:\n    f.write('x' * 65536)\n", 20);
    EXPECT(r, SANDBOX_OUTPUT_LIMIT, "endless file");
    sandbox_result_free(&r);
    check_clean("output");
}

static void test_network(void) {
    // A listener on the host's loopback: nothing may reach it.
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 4) == 0 &&
          getsockname(ls, (struct sockaddr *)&a, &al) == 0, "listener");
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    const char *args[] = {port};
    SandboxResult r = run_lang(SANDBOX_PYTHON,
        "import socket, sys\n"
        "port = int(sys.argv[1])\n"
        "for fam, addr in ((socket.AF_INET, ('127.0.0.1', port)), (socket.AF_INET, ('1.1.1.1', 80)),\n"
        "                  (socket.AF_INET6, ('::1', port))):\n"
        "    try:\n"
        "        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(1); s.connect(addr)\n"
        "        print('CONNECTED', addr)\n"
        "    except OSError as e:\n"
        "        print('blocked', e.errno)\n"
        "for fam in (socket.AF_NETLINK, socket.AF_PACKET):\n"
        "    try:\n"
        "        socket.socket(fam, socket.SOCK_RAW); print('OPENED', fam)\n"
        "    except OSError as e:\n"
        "        print('blocked', e.errno)\n"
        "a, b = socket.socketpair(); a.send(b'ok'); print('unix', b.recv(2))\n",
        5, 256, 4096, args, 1);
    EXPECT(r, SANDBOX_OK, "network");
    CHECK(!strstr(r.out, "CONNECTED") && !strstr(r.out, "OPENED"), "network: %s", r.out);
    CHECK(strstr(r.out, "unix b'ok'") != NULL, "network: AF_UNIX socketpair must work: %s", r.out);
    int c = accept(ls, NULL, NULL);
    CHECK(c < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "network: the host listener got a connection");
    if (c >= 0) close(c);
    close(ls);
    sandbox_result_free(&r);
    check_clean("network");
}

static void test_files(void) {
    if (no_landlock("host files")) return;
    char secret[64], outside[64];
    snprintf(secret, sizeof secret, "/tmp/grpo-test-secret-%d", (int)getpid());
    snprintf(outside, sizeof outside, "/tmp/grpo-test-escape-%d", (int)getpid());
    FILE *f = fopen(secret, "w");
    fputs("SECRET-CONTENT\n", f);
    fclose(f);
    chmod(secret, 0644);
    const char *args[] = {secret, outside, GRPO_TESTS_DIR "/sandbox/test_sandbox_attacks.c"};
    SandboxResult r = run_lang(SANDBOX_PYTHON,
        "import sys, os\n"
        "for p in sys.argv[1:2] + [sys.argv[3], '/etc/passwd', '/etc/shadow', '/proc/1/environ', '/proc/self/mounts',\n"
        "          '/root/.bashrc', '/home', '/var/log']:\n"
        "    try:\n"
        "        if os.path.isdir(p): os.listdir(p)\n"
        "        else: open(p).read(1)\n"
        "        print('READ', p)\n"
        "    except OSError as e:\n"
        "        print('denied', p, e.errno)\n"
        "for p in (sys.argv[2], '/dev/shm/grpo-escape', '../grpo-escape', '/usr/grpo-escape', '/var/tmp/grpo-escape'):\n"
        "    try:\n"
        "        open(p, 'w').write('x'); print('WROTE', p)\n"
        "    except OSError as e:\n"
        "        print('denied', p, e.errno)\n"
        "open('inside.txt', 'w').write('ok'); print('inside', open('inside.txt').read())\n",
        5, 256, 1 << 16, args, 3);
    EXPECT(r, SANDBOX_OK, "host files");
    CHECK(!strstr(r.out, "READ") && !strstr(r.out, "WROTE") && strstr(r.out, "inside ok"), "host files: %s", r.out);
    CHECK(!strstr(r.out, "SECRET"), "host files: the secret leaked");
    struct stat st;
    CHECK(stat(outside, &st) < 0 && stat("/dev/shm/grpo-escape", &st) < 0 && stat("/var/tmp/grpo-escape", &st) < 0 &&
          stat("/tmp/grpo-escape", &st) < 0, "host files: a file was written outside the work dir");
    unlink(secret);
    unlink(outside);
    sandbox_result_free(&r);
    check_clean("host files");
}

static void test_parent(void) {
    char me[16];
    snprintf(me, sizeof me, "%d", (int)getpid());
    const char *args[] = {me};
    SandboxResult r = run_lang(SANDBOX_PYTHON,
        "import os, sys, signal, ctypes\n"
        "sup = int(sys.argv[1])\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for pid in (sup, os.getppid(), -1):\n"
        "    try:\n"
        "        if pid: os.kill(pid, signal.SIGKILL); print('KILLED', pid)\n"
        "    except OSError as e:\n"
        "        print('denied kill', pid, e.errno)\n"
        "for pid in (sup, os.getppid()):\n"
        "    print('ptrace', libc.ptrace(16, pid, 0, 0), ctypes.get_errno())\n"
        "    try:\n"  // ptrace's other door: rewrite the process through /proc/PID/mem
        "        open('/proc/%d/mem' % pid, 'r+b'); print('MEM OPENED', pid)\n"
        "    except OSError as e:\n"
        "        print('denied mem', pid, e.errno)\n"
        "print('unshare', libc.unshare(0x10000000), ctypes.get_errno())\n"
        "print('clone', libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno())  # CLONE_NEWUSER\n"
        "print('clone3', libc.syscall(435, 0, 0), ctypes.get_errno())\n"
        "print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())\n",
        5, 256, 4096, args, 1);
    if (geteuid() == 0) {
        EXPECT(r, SANDBOX_OK, "signal/ptrace the parent");
        CHECK(!strstr(r.out, "KILLED") && strstr(r.out, "ptrace -1") && strstr(r.out, "unshare -1") &&
              strstr(r.out, "mount -1") && strstr(r.out, "clone -1 1\n") && strstr(r.out, "clone3 -1 38\n"),
              "parent: %s", r.out);
    } else {
        // Same uid as us: the program can kill its own sandbox init (tier 2), which ends the
        // run as killed; the supervisor itself stays out of reach.
        CHECK(r.status == SANDBOX_OK || r.status == SANDBOX_KILLED, "parent (not root): %s", sandbox_status_name(r.status));
        char line[64];
        snprintf(line, sizeof line, "KILLED %s\n", me);
        CHECK(!strstr(r.out, line), "parent (not root): the supervisor was signalled: %s", r.out);
    }
    CHECK(r.out && !strstr(r.out, "MEM OPENED"), "parent: /proc/PID/mem of the supervisor or the init opened for writing: %s", r.out);
    sandbox_result_free(&r);
    // A syscall through the 32-bit ABI is killed by the filter (SIGSYS).
    if (can_run_c) {
        r = run_lang(SANDBOX_C, "int main(void){ int r; __asm__ volatile(\"int $0x80\" : \"=a\"(r) : \"a\"(20)); return 0; }\n",
                     20, 512, 4096, NULL, 0);
        EXPECT(r, SANDBOX_KILLED, "foreign-ABI syscall");
        CHECK(r.signal == SIGSYS, "foreign ABI: signal %d", r.signal);
        sandbox_result_free(&r);
    }
    check_clean("parent");
}

static void test_rlimits(void) {
    SandboxResult r = run_py(
        "import resource\n"
        "for name in ('RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_CPU', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE'):\n"
        "    res = getattr(resource, name)\n"
        "    soft, hard = resource.getrlimit(res)\n"
        "    try:\n"
        "        resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)); print('RAISED', name)\n"
        "    except (ValueError, OSError) as e:\n"
        "        print('denied', name)\n"
        "print('AS now', resource.getrlimit(resource.RLIMIT_AS))\n", 5);
    EXPECT(r, SANDBOX_OK, "rlimits");
    CHECK(!strstr(r.out, "RAISED") && strstr(r.out, "AS now (268435456, 268435456)"), "rlimits: %s", r.out);
    sandbox_result_free(&r);
    check_clean("rlimits");
}

static void test_exit_before_asserts(void) {
    const char *hacks[] = {"def f(x):\n    return 0\nimport sys\nsys.exit(0)\n",
                           "def f(x):\n    return 0\nimport os\nos._exit(0)\n",
                           "def f(x):\n    return 0\nraise SystemExit\n"};
    for (int i = 0; i < 3; i++) {
        char nonce[33];
        char *prog = sandbox_assert_program(hacks[i], "def check(c):\n    assert c(1) == 2\n", "f", nonce, NULL);
        SandboxResult r = run_py(prog, 5);
        CHECK(r.status == SANDBOX_OK && !sandbox_assert_passed(&r, nonce), "exit(0) hack %d counted as a pass", i);
        sandbox_result_free(&r);
        free(prog);
    }
    char nonce[33];
    char *prog = sandbox_assert_program("def f(x):\n    return x + 1\n", "def check(c):\n    assert c(1) == 2\n", "f", nonce, NULL);
    SandboxResult r = run_py(prog, 5);
    CHECK(sandbox_assert_passed(&r, nonce), "a correct program must pass: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    free(prog);
    check_clean("exit before asserts");
}

static void test_state(void) {
    if (no_landlock("state outside the work dir")) return;
    SandboxResult r = run_py(
        "import os, time\n"
        "open('state.txt', 'w').write('x')\n"
        "for p in ('/tmp/grpo-state', os.path.expanduser('~/state2')):\n"
        "    try: open(p, 'w').write('x')\n"
        "    except OSError: pass\n"
        "if os.fork() == 0:\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "print('parent done')\n", 5);
    EXPECT(r, SANDBOX_OK, "state (background child)");
    CHECK(r.wall_ms < 6000, "state: the background child held the run for %ld ms", r.wall_ms);  // it sleeps 30 s
    sandbox_result_free(&r);
    CHECK(slot_procs() == 0 || (usleep(200000), slot_procs() == 0), "state: the background child survived");
    r = run_py("import os\nprint(sorted(os.listdir('.')), os.path.exists('/tmp/grpo-state'), "
               "os.path.exists(os.path.expanduser('~/state2')))\n", 5);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "['main.py'] False False\n"), "state left behind: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    check_clean("state");
}

/* What a run leaves in its work dir is removed without following it anywhere: symlinks
 * to a host file and dir (the supervisor sees host paths; tier 1's /work is emptied and
 * reused per slot), unreadable dirs, a fifo, and a tree deeper than PATH_MAX. */
static void test_state_tree(void) {
    char canary_dir[] = "/tmp/grpo-canary-XXXXXX", canary[64];
    CHECK(mkdtemp(canary_dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(canary, sizeof canary, "%s/keep", canary_dir);
    FILE *f = fopen(canary, "w");
    CHECK(f && fputs("host", f) >= 0 && fclose(f) == 0, "writing %s", canary);
    char code[1024];
    snprintf(code, sizeof code,
             "import os\n"
             "os.symlink('%s', 'file_link'); os.symlink('%s', 'dir_link'); os.symlink('/', 'root_link')\n"
             "os.mkfifo('fifo')\n"
             "os.makedirs('locked/inner'); open('locked/inner/f', 'w').write('x')\n"
             "os.chmod('locked/inner', 0); os.chmod('locked', 0)\n"
             "fd = os.open('.', os.O_RDONLY)\n"
             "for i in range(40):\n"
             "    os.mkdir('d' * 200, dir_fd=fd); nfd = os.open('d' * 200, os.O_RDONLY, dir_fd=fd); os.close(fd); fd = nfd\n"
             "print('left')\n", canary, canary_dir);
    SandboxResult r = run_py(code, 10);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "left\n"), "state tree: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    struct stat st;
    CHECK(stat(canary, &st) == 0 && st.st_size == 4, "state tree: the host file behind a symlink was touched");
    r = run_py("import os\nprint(sorted(os.listdir('.')))\n", 5);
    CHECK(r.status == SANDBOX_OK && !strcmp(r.out, "['main.py']\n"), "state tree left behind: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    unlink(canary);
    rmdir(canary_dir);
    check_clean("state tree");
}

static void test_huge_argv(void) {
    // From the caller: rejected before anything runs.
    static char big[200 << 10];
    memset(big, 'a', sizeof big - 1);
    const char *args[] = {big};
    SandboxConfig cfg = {.lang = SANDBOX_PYTHON, .code = "pass\n", .args = args, .nargs = 1, .tier = tier};
    SandboxResult r;
    Err err = {0};
    CHECK(sandbox_run(&cfg, &r, &err) < 0 && err.code == ERR_INPUT, "huge argv from the caller must be rejected");
    sandbox_result_free(&r);
    // From the program: execve with huge argv/env fails with E2BIG inside the sandbox.
    r = run_py("import os, sys\n"
               "try:\n"
               "    os.execve(sys.executable, ['x' * (1 << 20)] * 64, {'A': 'y' * (1 << 22)})\n"
               "except OSError as e:\n"
               "    print('execve failed', e.errno)\n"
               "    raise\n", 5);
    EXPECT(r, SANDBOX_RUNTIME_ERROR, "huge argv/env");
    CHECK(strstr(r.out, "execve failed 7") != NULL, "huge argv: %s %s", r.out, r.err);
    sandbox_result_free(&r);
    check_clean("huge argv/env");
}

/* The supervisor dies (SIGKILL) during a run whose program has a child of its own:
 * everything of the slot must go with it. */
static void test_die_with_parent(void) {
    int pfd[2];
    if (pipe(pfd) < 0) return;
    pid_t sup = fork();
    if (sup == 0) {
        close(pfd[0]);
        unsigned uid = sandbox_slot_uid(0);
        if (write(pfd[1], &uid, sizeof uid) != sizeof uid) _exit(1);
        SandboxResult r = run_py("import os, time\nos.fork()\ntime.sleep(60)\n", 30);
        sandbox_result_free(&r);
        _exit(0);
    }
    close(pfd[1]);
    unsigned uid = 0;
    CHECK(read(pfd[0], &uid, sizeof uid) == sizeof uid, "die-with-parent: no uid from the supervisor");
    close(pfd[0]);
    if (uid == (unsigned)geteuid()) {  // not root: nothing to count by
        kill(sup, SIGKILL);
        waitpid(sup, NULL, 0);
        return;
    }
    int running = 0;
    for (int i = 0; i < 500 && running < 2; i++) {  // both sleepers up
        usleep(10000);
        running = 0;
        DIR *d = opendir("/proc");
        for (struct dirent *e; d && (e = readdir(d));) {
            char path[300], line[256];
            snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
            FILE *f = e->d_name[0] >= '0' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
            while (f && fgets(line, sizeof line, f)) {
                unsigned u;
                if (sscanf(line, "Uid:\t%u", &u) == 1) { running += u == uid; break; }
            }
            if (f) fclose(f);
        }
        if (d) closedir(d);
    }
    kill(sup, SIGKILL);
    waitpid(sup, NULL, 0);
    int left = running;
    for (int i = 0; i < 300 && left; i++) {
        usleep(10000);
        left = 0;
        DIR *d = opendir("/proc");
        for (struct dirent *e; d && (e = readdir(d));) {
            char path[300], line[256];
            snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
            FILE *f = e->d_name[0] >= '0' && e->d_name[0] <= '9' ? fopen(path, "r") : NULL;
            int zombie = 0;
            while (f && fgets(line, sizeof line, f)) {
                unsigned u;
                if (!strncmp(line, "State:\tZ", 8)) zombie = 1;
                if (sscanf(line, "Uid:\t%u", &u) == 1) { left += u == uid && !zombie; break; }
            }
            if (f) fclose(f);
        }
        if (d) closedir(d);
    }
    CHECK(running >= 2, "die-with-parent: the program and its child did not start (%d)", running);
    CHECK(left == 0, "die-with-parent: %d processes of the slot outlived the supervisor", left);
}

int main(int argc, char **argv) {
    tier = argc > 1 ? atoi(argv[1]) : 2;
    int best = sandbox_probe();
    printf("probe: %s\n", sandbox_probe_report());
    if (best < 0) TEST_SKIP("seccomp is unavailable on this kernel");
    if (!sandbox_tool_path(SANDBOX_PYTHON)) TEST_SKIP("no python3 usable by the sandbox");
    if (tier == SANDBOX_TIER_NAMESPACES && best != SANDBOX_TIER_NAMESPACES)
        TEST_SKIP("tier 1 (namespaces) refused here; tier 2 runs in sandbox_attacks_tier2");
    if (geteuid() != 0) printf("note: not root, so no slot uid: process counts by uid are not checked\n");
    struct statvfs vs;
    can_run_c = sandbox_tool_path(SANDBOX_C) &&
                (tier == SANDBOX_TIER_NAMESPACES || statvfs("/tmp", &vs) != 0 || !(vs.f_flag & ST_NOEXEC));
    if (!can_run_c) printf("skipped the C programs: no cc, or /tmp is mounted noexec (tier 2 work dirs live there)\n");
    signal(SIGPIPE, SIG_IGN);
    test_basics();
    test_fork_bomb();
    test_thread_bomb();
    test_memory_bomb();
    test_cpu_and_sleep();
    test_output();
    test_network();
    test_files();
    test_parent();
    test_rlimits();
    test_exit_before_asserts();
    test_state();
    test_state_tree();
    test_huge_argv();
    test_die_with_parent();
    return test_report();
}
