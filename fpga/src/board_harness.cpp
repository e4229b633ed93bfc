// Verilator driver for `systole_board`: a UART model between the board's pins and this
// process's stdin/stdout, so host code (systole_fpga::link) talks to the RTL as to a board.
//
// stdin carries messages: 'D' len(u16 LE) bytes -> sent to uart_rx, 8N1 at CPB cycles a bit;
// 'R' cycles(u32 LE) -> btn_n held low that long (a reset); 'Q' -> exit. Bytes the board
// sends on uart_tx are decoded (sampled mid-bit) and written to stdout as they complete.
// Usage: Vsystole_board CPB
#include "Vsystole_board.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>
#include <vector>

static std::vector<uint8_t> inbuf;

// Reads whatever stdin has (blocking only if `block`); false at end of input.
static bool pump(bool block) {
    struct pollfd p = {0, POLLIN, 0};
    if (poll(&p, 1, block ? 100 : 0) <= 0) return true;
    uint8_t b[4096];
    ssize_t n = read(0, b, sizeof b);
    if (n <= 0) return false;
    inbuf.insert(inbuf.end(), b, b + n);
    return true;
}

int main(int argc, char** argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s CYCLES_PER_BIT\n", argv[0]); return 2; }
    const int cpb = atoi(argv[1]);
    VerilatedContext ctx;
    Vsystole_board top(&ctx);
    std::deque<uint8_t> txq;  // bytes to send to the board
    uint64_t reset_left = 0;
    // Host -> board serializer.
    int s_bit = -1, s_cnt = 0;
    uint16_t s_frame = 0;
    // Board -> host deserializer.
    int r_bit = -1, r_cnt = 0;
    uint8_t r_byte = 0;
    int prev_tx = 1;
    top.clk = 0; top.btn_n = 1; top.uart_rx = 1;
    top.eval();
    bool open = true;
    for (uint64_t t = 0;; ++t) {
        if ((t & 63) == 0 || (txq.empty() && s_bit < 0 && r_bit < 0 && reset_left == 0 && inbuf.empty())) {
            // Block briefly only when nothing is in flight on the wires.
            bool idle = txq.empty() && s_bit < 0 && r_bit < 0 && reset_left == 0 && inbuf.empty()
                && (t & 0xffff) == 0;
            if (open) open = pump(idle);
            // Parse complete messages.
            for (;;) {
                if (inbuf.empty()) break;
                uint8_t k = inbuf[0];
                if (k == 'Q') return 0;
                if (k == 'D') {
                    if (inbuf.size() < 3) break;
                    size_t n = inbuf[1] | (inbuf[2] << 8);
                    if (inbuf.size() < 3 + n) break;
                    txq.insert(txq.end(), inbuf.begin() + 3, inbuf.begin() + 3 + n);
                    inbuf.erase(inbuf.begin(), inbuf.begin() + 3 + n);
                } else if (k == 'R') {
                    if (inbuf.size() < 5) break;
                    reset_left = inbuf[1] | (inbuf[2] << 8) | (inbuf[3] << 16) | ((uint64_t)inbuf[4] << 24);
                    inbuf.erase(inbuf.begin(), inbuf.begin() + 5);
                } else {
                    fprintf(stderr, "harness: bad message 0x%02x\n", k);
                    return 2;
                }
            }
            if (!open && inbuf.empty() && txq.empty() && s_bit < 0) return 0;
        }
        // Serializer: start bit, 8 data bits LSB first, stop bit.
        if (s_bit < 0 && !txq.empty()) {
            s_frame = (uint16_t)(0x200 | (txq.front() << 1));
            txq.pop_front();
            s_bit = 0; s_cnt = 0;
        }
        top.uart_rx = s_bit < 0 ? 1 : (s_frame >> s_bit) & 1;
        top.btn_n = reset_left > 0 ? 0 : 1;
        if (reset_left > 0) --reset_left;
        top.clk = 1; top.eval();
        top.clk = 0; top.eval();
        if (s_bit >= 0 && ++s_cnt == cpb) {
            s_cnt = 0;
            if (++s_bit == 10) s_bit = -1;
        }
        // Deserializer on uart_tx.
        int tx = top.uart_tx;
        if (r_bit < 0) {
            if (prev_tx == 1 && tx == 0) { r_bit = 0; r_cnt = cpb / 2; }
        } else if (--r_cnt == 0) {
            r_cnt = cpb;
            if (r_bit == 0) {
                if (tx != 0) r_bit = -1; else r_bit = 1;
            } else if (r_bit <= 8) {
                r_byte = (uint8_t)((r_byte >> 1) | (tx << 7));
                ++r_bit;
            } else {
                if (tx == 1) { fputc(r_byte, stdout); fflush(stdout); }
                r_bit = -1;
            }
        }
        prev_tx = tx;
    }
}
