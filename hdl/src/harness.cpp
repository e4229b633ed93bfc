// Verilator driver for systole_top: loads the instruction memory, models the external DRAM
// with exactly the emulator's timing (emulator/src/dram.rs), runs to `done` and writes the
// final DRAM image. Usage:
//   Vsystole_top IMEM.bin DRAM_IN.bin DRAM_OUT.bin BYTES_PER_BEAT LATENCY MAX_CYCLES [VCD]
// Prints "cycles N" (the accelerator's own count) and "sim_cycles N" on stdout.
#include "Vsystole_top.h"
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <vector>

static std::vector<uint8_t> slurp(const char* path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) { fprintf(stderr, "error: cannot read %s\n", path); exit(2); }
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Byte-wise access to Verilator port types of any width.
template <typename T> static void put(T& port, const uint8_t* b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[i];
    port = (T)v;
}
template <std::size_t W> static void put(VlWide<W>& port, const uint8_t* b, int n) {
    for (std::size_t w = 0; w < W; ++w) port[w] = 0;
    for (int i = 0; i < n; ++i) port[i / 4] |= (uint32_t)b[i] << (8 * (i % 4));
}
template <typename T> static void get(const T& port, uint8_t* b, int n) {
    uint64_t v = (uint64_t)port;
    for (int i = 0; i < n; ++i) { b[i] = v & 0xff; v >>= 8; }
}
template <std::size_t W> static void get(const VlWide<W>& port, uint8_t* b, int n) {
    for (int i = 0; i < n; ++i) b[i] = (port[i / 4] >> (8 * (i % 4))) & 0xff;
}

struct Req { uint64_t ready; uint64_t addr; uint32_t beats; };

int main(int argc, char** argv) {
    if (argc < 7) { fprintf(stderr, "usage: %s IMEM DRAM_IN DRAM_OUT B L MAX [VCD]\n", argv[0]); return 2; }
    std::vector<uint8_t> imem = slurp(argv[1]);
    std::vector<uint8_t> dram = slurp(argv[2]);
    const int B = atoi(argv[4]);
    const uint64_t L = strtoull(argv[5], nullptr, 10);
    const uint64_t max_cycles = strtoull(argv[6], nullptr, 10);
    VerilatedContext ctx;
    Vsystole_top top(&ctx);
#if VM_TRACE
    VerilatedVcdC* vcd = nullptr;
    if (argc > 7) { ctx.traceEverOn(true); vcd = new VerilatedVcdC; top.trace(vcd, 99); vcd->open(argv[7]); }
#endif
    uint64_t ts = 0;
    auto tick = [&]() {
        top.clock = 1; top.eval();
#if VM_TRACE
        if (vcd) vcd->dump(ts);
#endif
        ts++;
        top.clock = 0; top.eval();
#if VM_TRACE
        if (vcd) vcd->dump(ts);
#endif
        ts++;
    };
    top.clock = 0; top.rst = 1; top.rresp_valid = 0; top.wack = 0; top.imem_we = 0;
    top.eval();
    for (size_t i = 0; i * 16 < imem.size(); ++i) {
        top.imem_we = 1; top.imem_waddr = (uint32_t)i; top.imem_wstrb = 0xffff;
        put(top.imem_wdata, &imem[i * 16], 16);
        tick();
    }
    top.imem_we = 0;
    tick();  // ir <- imem[0]
    top.rst = 0;
    std::deque<Req> rq;
    std::deque<uint64_t> acks;
    std::vector<uint8_t> beat(B), zero(B, 0);
    uint64_t t = 0;
    bool bad = false;
    for (; t < max_cycles && !top.done; ++t) {
        // Inputs for cycle t, from the memory's state at the start of t.
        bool valid = !rq.empty() && rq.front().ready <= t;
        if (valid) {
            uint64_t a = rq.front().addr;
            if (a + B > dram.size()) { fprintf(stderr, "error: read beyond DRAM at %llu\n", (unsigned long long)a); bad = true; break; }
            put(top.rresp_data, &dram[a], B);
        } else {
            put(top.rresp_data, zero.data(), B);
        }
        top.rresp_valid = valid;
        top.wack = !acks.empty() && acks.front() == t;
        if (top.wack) acks.pop_front();
        top.eval();
        // The memory's reaction to the accelerator's outputs in cycle t.
        if (valid && top.rresp_ready) {
            Req& f = rq.front();
            f.addr += B;
            if (--f.beats == 0) rq.pop_front();
        }
        if (top.rreq_valid && top.rreq_beats > 0) rq.push_back({t + L, top.rreq_addr, top.rreq_beats});
        if (top.wvalid) {
            uint64_t a = top.waddr;
            const uint64_t strb = (uint64_t)top.wstrb;  // byte enables (a packed line's last beat)
            get(top.wdata, beat.data(), B);
            for (int i = 0; i < B; ++i) {
                if (!((strb >> i) & 1)) continue;
                if (a + i >= dram.size()) { fprintf(stderr, "error: write beyond DRAM at %llu\n", (unsigned long long)(a + i)); bad = true; break; }
                dram[a + i] = beat[i];
            }
            if (bad) break;
            if (top.wlast) acks.push_back(t + L);
        }
        tick();
    }
#if VM_TRACE
    if (vcd) { vcd->close(); delete vcd; }
#endif
    if (bad) return 1;
    if (!top.done) { fprintf(stderr, "error: no finish within %llu cycles\n", (unsigned long long)max_cycles); return 1; }
    std::ofstream o(argv[3], std::ios::binary);
    o.write((const char*)dram.data(), dram.size());
    printf("cycles %llu\nsim_cycles %llu\n", (unsigned long long)top.cycles, (unsigned long long)t);
    return 0;
}
