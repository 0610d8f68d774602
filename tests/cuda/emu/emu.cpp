// emu.cpp: the host side of tests/cuda/emu (see emu.h for the model and what
// it does not check): fibers for the CUDA threads of a block, their barriers,
// launches (configuration checked as the GPU would: threads per block, grid
// limits, dynamic shared memory against cudaFuncSetAttribute), and the CUDA
// runtime calls on host memory (device allocations are tracked, so a copy in
// the wrong direction or past an allocation is an error, as on the GPU).
// Environment: GRPO_EMU_ORDER=fwd|rev|shuffle runs the threads between two
// barriers, and the blocks, in that order (a result that changes with it
// depends on an order CUDA does not promise); GRPO_EMU_VERBOSE=1 prints each
// launch.
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <functional>
#include <map>
#include <vector>

#include "emu.h"

extern "C" void emu_switch(void **save_sp, void *new_sp);
// Saves the callee-saved registers and the stack pointer in *save_sp, loads new_sp's (System V x86-64).
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

EmuThread *emu_cur;
uint3 emu_block_idx;
dim3 emu_block_dim, emu_grid_dim;

enum { RUN, AT_BLOCK, AT_WARP, DONE };
enum { MAX_THREADS = 1024, STACK = 256 << 10, PAGE = 4096 };

static EmuThread th[MAX_THREADS];
static char *stacks;  // MAX_THREADS stacks of STACK bytes, a guard page at the low end of each
static void *sched_sp;
static int nth, live, at_block, warp_live[32], warp_at[32];
static uint64_t xchg[MAX_THREADS];
static void (*cur_body)(void *);
static void *cur_ctx;
static const char *cur_name;
static unsigned char *dyn;  // dynamic shared memory, 128-byte aligned
static size_t dyn_bytes, dyn_cap;
static int order_mode = -1;  // 0 fwd, 1 rev, 2 shuffle
static uint64_t shuffle_state = 0x9e3779b97f4a7c15ull;
static cudaError_t last_error = cudaSuccess;
long emu_launches, emu_blocks;
unsigned long emu_block_serial;

static void fail(const char *fmt, const char *a, const char *b = "") {
    fprintf(stderr, "emu: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    abort();
}

unsigned char *emu_dyn_smem() { return dyn; }

static void release_block() {
    for (int i = 0; i < nth; i++)
        if (th[i].state == AT_BLOCK) th[i].state = RUN;
    at_block = 0;
}
static void release_warp(int w) {
    for (int i = w * 32; i < nth && i < w * 32 + 32; i++)
        if (th[i].state == AT_WARP) th[i].state = RUN;
    warp_at[w] = 0;
}

void emu_syncthreads() {
    EmuThread *t = emu_cur;
    t->state = AT_BLOCK;
    if (++at_block == live)
        release_block();
    else
        emu_switch(&t->sp, sched_sp);
    emu_cur = t;
}

void emu_warp_barrier() {
    EmuThread *t = emu_cur;
    t->state = AT_WARP;
    if (++warp_at[t->warp] == warp_live[t->warp])
        release_warp(t->warp);
    else
        emu_switch(&t->sp, sched_sp);
    emu_cur = t;
}

uint64_t emu_warp_exchange(uint64_t v, int src) {
    const int me = emu_cur->lin, w0 = emu_cur->warp * 32;
    xchg[me] = v;
    emu_warp_barrier();
    int s = w0 + src;
    uint64_t r = src >= 0 && src < 32 && s < nth ? xchg[s] : v;
    if (src >= 0 && src < 32 && s < nth && th[s].state == DONE) r = ~0ull;  // an exited lane: garbage
    emu_warp_barrier();
    return r;
}

unsigned emu_warp_ballot(int p) {
    const int me = emu_cur->lin, w0 = emu_cur->warp * 32;
    xchg[me] = p != 0;
    emu_warp_barrier();
    unsigned m = 0;
    for (int i = 0; i < 32 && w0 + i < nth; i++)
        if (th[w0 + i].state != DONE && xchg[w0 + i]) m |= 1u << i;
    emu_warp_barrier();
    return m;
}

static void fiber_main() {
    cur_body(cur_ctx);
    EmuThread *t = emu_cur;
    t->state = DONE;
    live--;
    if (--warp_live[t->warp] > 0 && warp_at[t->warp] == warp_live[t->warp]) release_warp(t->warp);
    if (live > 0 && at_block == live) release_block();
    emu_switch(&t->sp, sched_sp);
    fail("%s: a finished thread was resumed", cur_name);
}

static void fiber_init(EmuThread *t, int i) {
    void **top = (void **)(stacks + (size_t)(i + 1) * STACK);
    *--top = NULL;                              // fiber_main's return address (never used)
    *--top = (void *)fiber_main;                // emu_switch's ret goes here
    for (int r = 0; r < 6; r++) *--top = NULL;  // rbp rbx r12-r15
    t->sp = top;
}

static uint64_t next_rand() {
    uint64_t z = (shuffle_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void permute(std::vector<int> &v) {
    if (order_mode == 1) std::reverse(v.begin(), v.end());
    if (order_mode == 2)
        for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[next_rand() % i]);
}

static void run_block() {
    live = nth, at_block = 0;
    for (int w = 0; w < 32; w++) warp_live[w] = std::max(0, std::min(32, nth - w * 32)), warp_at[w] = 0;
    for (int i = 0; i < nth; i++) {
        EmuThread *t = &th[i];
        t->lin = i, t->warp = i >> 5, t->lane = i & 31, t->state = RUN;
        t->tid = uint3{i % emu_block_dim.x, (i / emu_block_dim.x) % emu_block_dim.y,
                       i / (emu_block_dim.x * emu_block_dim.y)};
        fiber_init(t, i);
    }
    std::vector<int> ord(nth);
    for (int i = 0; i < nth; i++) ord[i] = i;
    if (order_mode == 1) std::reverse(ord.begin(), ord.end());
    while (live > 0) {
        bool ran = false;
        if (order_mode == 2) permute(ord);
        for (int i : ord)
            if (th[i].state == RUN) {
                emu_cur = &th[i];
                emu_switch(&sched_sp, th[i].sp);
                ran = true;
            }
        if (!ran && live > 0) {
            fprintf(stderr, "emu: kernel %s, block (%u,%u,%u): barrier deadlock; waiting threads:", cur_name,
                    emu_block_idx.x, emu_block_idx.y, emu_block_idx.z);
            for (int i = 0; i < nth; i++)
                if (th[i].state != DONE) fprintf(stderr, " %d:%s", i, th[i].state == AT_BLOCK ? "syncthreads" : "warp");
            fprintf(stderr, "\n");
            abort();
        }
    }
}

static std::map<const void *, int> smem_limit;  // kernel -> cudaFuncAttributeMaxDynamicSharedMemorySize

void emu_run(const char *name, const void *kernel, EmuCfg c, void (*body)(void *), void *ctx) {
    if (order_mode < 0) {
        const char *o = getenv("GRPO_EMU_ORDER");
        order_mode = !o || !strcmp(o, "fwd") ? 0 : !strcmp(o, "rev") ? 1 : 2;
        if (order_mode == 2 && getenv("GRPO_EMU_SEED")) shuffle_state = strtoull(getenv("GRPO_EMU_SEED"), 0, 10);
    }
    if (!stacks) {
        stacks = (char *)mmap(NULL, (size_t)MAX_THREADS * STACK, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (stacks == MAP_FAILED) fail("%s: no memory for the fiber stacks", name);
        for (int i = 0; i < MAX_THREADS; i++) mprotect(stacks + (size_t)i * STACK, PAGE, PROT_NONE);
    }
    const unsigned long nt = (unsigned long)c.block.x * c.block.y * c.block.z;
    const unsigned long nb = (unsigned long)c.grid.x * c.grid.y * c.grid.z;
    auto it = smem_limit.find(kernel);
    const size_t lim = it != smem_limit.end() ? (size_t)it->second : 48u << 10;
    if (getenv("GRPO_EMU_VERBOSE"))
        fprintf(stderr, "emu: %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", name, c.grid.x, c.grid.y, c.grid.z,
                c.block.x, c.block.y, c.block.z, c.smem);
    if (nt == 0 || nt > MAX_THREADS || c.block.z > 64 || nb == 0 || c.grid.y > 65535 || c.grid.z > 65535 ||
        c.grid.x > 0x7fffffffu) {
        fprintf(stderr, "emu: launch of %s: bad configuration grid (%u,%u,%u) block (%u,%u,%u)\n", name, c.grid.x,
                c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z);
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (c.smem > lim) {
        fprintf(stderr, "emu: launch of %s: %zu bytes of dynamic shared memory, allowed %zu\n", name, c.smem, lim);
        last_error = cudaErrorInvalidValue;
        return;
    }
    cur_name = name, cur_body = body, cur_ctx = ctx;
    emu_block_dim = c.block, emu_grid_dim = c.grid, nth = (int)nt;
    dyn_bytes = (c.smem + 127) / 128 * 128 + 128;
    if (dyn_bytes > dyn_cap) {
        free(dyn);
        dyn = (unsigned char *)aligned_alloc(128, dyn_bytes);
        dyn_cap = dyn_bytes;
    }
    std::vector<int> ord;
    if (order_mode) {
        ord.resize(nb);
        for (unsigned long i = 0; i < nb; i++) ord[i] = (int)i;
        permute(ord);
    }
    for (unsigned long b = 0; b < nb; b++) {
        unsigned long k = order_mode ? (unsigned long)ord[b] : b;
        emu_block_idx =
            uint3{(unsigned)(k % c.grid.x), (unsigned)(k / c.grid.x % c.grid.y), (unsigned)(k / c.grid.x / c.grid.y)};
        memset(dyn, 0xff, dyn_bytes);  // unwritten shared memory reads as NaN
        emu_block_serial++;
        run_block();
        emu_blocks++;
    }
    emu_launches++;
}

// ---------------------------------------------------------------------------
// Runtime API.

static std::map<uintptr_t, size_t> allocs;  // device allocations: start -> bytes

// Whether [p, p + n) lies inside one device allocation.
static bool on_device(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = allocs.upper_bound(a);
    if (it == allocs.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}

static bool in_any_alloc(const void *p) { return on_device(p, 1); }
bool emu_on_device(const void *p, size_t n) { return on_device(p, n); }

static cudaError_t err(cudaError_t e, const char *what, const char *detail) {
    fprintf(stderr, "emu: %s: %s\n", what, detail);
    return last_error = e;
}

static cudaError_t check_copy(void *d, const void *s, size_t n, cudaMemcpyKind k, const char *what) {
    if (n == 0) return cudaSuccess;
    bool dd = on_device(d, n), sd = on_device(s, n);
    char msg[200];
    snprintf(msg, sizeof msg, "%zu bytes, kind %d, dst %s, src %s", n, (int)k,
             dd                ? "device"
             : in_any_alloc(d) ? "PAST a device allocation"
                               : "host",
             sd                ? "device"
             : in_any_alloc(s) ? "PAST a device allocation"
                               : "host");
    bool ok = k == cudaMemcpyDefault          ? (dd || !in_any_alloc(d)) && (sd || !in_any_alloc(s))
              : k == cudaMemcpyHostToDevice   ? dd && !in_any_alloc(s)
              : k == cudaMemcpyDeviceToHost   ? sd && !in_any_alloc(d)
              : k == cudaMemcpyDeviceToDevice ? dd && sd
                                              : !in_any_alloc(d) && !in_any_alloc(s);
    if (!ok) return err(cudaErrorInvalidValue, what, msg);
    return cudaSuccess;
}

struct EmuStream {
    int dummy;
};
struct EmuEvent {
    double t;
};

static double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// ---- graphs ----
struct EmuGraph {
    std::vector<std::function<void()>> steps;
    bool invalid;
};
static cudaStream_t cap_stream;  // the stream capturing (one at a time), or NULL
static EmuGraph *cap_graph;

bool emu_capturing(cudaStream_t s) { return cap_graph && s == cap_stream; }
void emu_record(cudaStream_t s, std::function<void()> step) {
    (void)s;
    cap_graph->steps.push_back(std::move(step));
}

extern "C" {
cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int dev) {
    if (dev != 0) return cudaErrorInvalidValue;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation (tests/cuda/emu), not a GPU");
    p->totalGlobalMem = 80ull << 30, p->sharedMemPerBlock = 48 << 10, p->sharedMemPerBlockOptin = 232448;
    p->sharedMemPerMultiprocessor = 233472, p->regsPerBlock = 65536, p->warpSize = 32, p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9, p->minor = 0, p->multiProcessorCount = 132, p->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int dev) {
    if (dev != 0) return cudaErrorInvalidValue;
    *v = a == cudaDevAttrMemoryClockRate ? 2619000 : 5120; /* an H100 SXM's, so the benches' arithmetic runs */
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    void *q = NULL;  // cudaMalloc's 256-byte alignment, exactly n bytes (AddressSanitizer sees overruns)
    if (posix_memalign(&q, 256, n ? n : 1)) return last_error = cudaErrorMemoryAllocation;
    memset(q, 0xff, n);  // fresh device memory is not zero: NaN bytes expose reads before writes
    allocs[(uintptr_t)q] = n;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end()) return err(cudaErrorInvalidDevicePointer, "cudaFree", "not a device allocation");
    allocs.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    *f = 70ull << 30, *t = 80ull << 30;
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (n && !on_device(p, n)) return err(cudaErrorInvalidValue, "cudaMemset", "range not inside a device allocation");
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode) {
    if (cap_graph || !s) return err(cudaErrorInvalidValue, "cudaStreamBeginCapture", "already capturing, or stream 0");
    cap_stream = s, cap_graph = new EmuGraph();
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!cap_graph || s != cap_stream) return err(cudaErrorInvalidValue, "cudaStreamEndCapture", "not capturing");
    EmuGraph *gr = cap_graph;
    cap_graph = NULL, cap_stream = NULL;
    if (gr->invalid) {
        delete gr;
        *g = NULL;
        return last_error = cudaErrorStreamCaptureInvalidated;
    }
    *g = gr;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    if (!g) return err(cudaErrorInvalidValue, "cudaGraphInstantiate", "no graph");
    *e = new EmuGraph(*g);
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (!e) return err(cudaErrorInvalidValue, "cudaGraphLaunch", "no graph");
    if (emu_capturing(s)) return err(cudaErrorInvalidValue, "cudaGraphLaunch", "inside a capture (not emulated)");
    for (auto &step : e->steps) step();
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}

// A copy or memset on a capturing stream: recorded when device to device, else the capture fails.
static bool captured(cudaStream_t st, void *d, const void *s, size_t n, bool memset_, int v, cudaError_t *rc) {
    if (!emu_capturing(st)) return false;
    if (!on_device(d, n) || (!memset_ && !on_device(s, n))) {
        cap_graph->invalid = true;
        *rc = err(cudaErrorStreamCaptureUnsupported, "capture", "a copy to or from host memory on a capturing stream");
        return true;
    }
    if (memset_) emu_record(st, [d, v, n] { memset(d, v, n); });
    else emu_record(st, [d, s, n] { memmove(d, s, n); });
    *rc = cudaSuccess;
    return true;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
    cudaError_t rc;
    if (captured(st, p, NULL, n, true, v, &rc)) return rc;
    return cudaMemset(p, v, n);
}
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k) {
    cudaError_t e = check_copy(d, s, n, k, "cudaMemcpy");
    if (e == cudaSuccess && n) memmove(d, s, n);
    return e;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, enum cudaMemcpyKind k, cudaStream_t st) {
    cudaError_t e = check_copy(d, s, n, k, "cudaMemcpyAsync");
    if (e == cudaSuccess && n && captured(st, d, s, n, false, 0, &e)) return e;
    if (e == cudaSuccess && n) memmove(d, s, n);
    return e;
}
cudaError_t cudaMemcpy2D(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, enum cudaMemcpyKind k) {
    if (w > dp || w > sp) return err(cudaErrorInvalidValue, "cudaMemcpy2D", "width exceeds a pitch");
    for (size_t r = 0; r < h; r++) {
        cudaError_t e = cudaMemcpy((char *)d + r * dp, (const char *)s + r * sp, w, k);
        if (e) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, enum cudaMemcpyKind k,
                              cudaStream_t) {
    return cudaMemcpy2D(d, dp, s, sp, w, h, k);
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    *s = new EmuStream();
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new EmuEvent();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->t = now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)(b->t - a->t);
    return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }
const char *cudaGetErrorName(cudaError_t e) { return cudaGetErrorString(e); }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess:
            return "no error (emu)";
        case cudaErrorInvalidValue:
            return "invalid argument (emu)";
        case cudaErrorMemoryAllocation:
            return "out of memory (emu)";
        case cudaErrorInvalidConfiguration:
            return "invalid configuration argument (emu)";
        case cudaErrorInvalidDevicePointer:
            return "invalid device pointer (emu)";
        default:
            return "unknown error (emu)";
    }
}
cudaError_t cudaFuncSetAttribute(const void *f, enum cudaFuncAttribute a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize)
        return err(cudaErrorInvalidValue, "cudaFuncSetAttribute", "unknown attribute");
    if (v < 0 || v > 232448)
        return err(cudaErrorInvalidValue, "cudaFuncSetAttribute", "more than sm_90's 232448 bytes");
    smem_limit[f] = v;
    return cudaSuccess;
}
}
