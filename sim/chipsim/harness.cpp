// plasticore chip harness: the Verilated multi-core chip driven at full Verilator speed through
// its bus port, by requests on stdin; replies on stdout.  No Python in the per-cycle loop.
//
// Request  (little-endian): u8 op, u8 0, u16 n, u32 addr, then
//            WRITE/WRITE_FIX: n data words;  RUN: one word (steps)
// Reply    (only to READ, READ_FIX, RUN, SYNC, STATS):
//            u8 status (0 ok, 1 a bus error happened since the last reply), u8 0, u16 n,
//            u32 first_error_addr, then n words
// ops: plasticore.bus_ops.HarnessOp (READ addr..addr+n-1, WRITE, RUN, RESET, READ_FIX, WRITE_FIX, SYNC,
//      STATS (words: cycles lo, cycles hi), QUIT); bus ops: plasticore.bus_ops.BusOp.  Both arrive as
//      constants in bus_ops.h, which sim/chipsim.py writes from Python next to the build.
#include "bus_ops.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <unistd.h>
#include "Vchip.h"
#include "verilated.h"

static Vchip* top;
static uint64_t cycles = 0;
static bool err_flag = false;
static uint32_t err_addr = 0;

static void tick() {
    top->clk = 0; top->eval();
    top->clk = 1; top->eval();
    cycles++;
}

static bool read_exact(void* buf, size_t n) {
    uint8_t* p = (uint8_t*)buf;
    while (n) {
        ssize_t r = read(0, p, n);
        if (r <= 0) return false;
        p += r; n -= (size_t)r;
    }
    return true;
}

static std::vector<uint8_t> outbuf;
static void put32(uint32_t v) { for (int i = 0; i < 4; i++) outbuf.push_back((v >> (8 * i)) & 0xFF); }
static void flush_out() {
    size_t off = 0;
    while (off < outbuf.size()) {
        ssize_t w = write(1, outbuf.data() + off, outbuf.size() - off);
        if (w <= 0) exit(3);
        off += (size_t)w;
    }
    outbuf.clear();
}

// one bus transaction; returns r_data for READ/RUN
static uint32_t bus(int op, uint32_t addr, uint32_t data) {
    top->bus___05Fvalid = 1; top->bus___05Fop = op; top->bus___05Faddr = addr; top->bus___05Fw_data = data;
    top->eval();
    uint64_t guard = 0;
    while (!top->bus___05Fready) { tick(); top->eval(); if (++guard > 4000000000ull) { fprintf(stderr, "chipsim: bus wedged\n"); exit(4); } }
    bool err_now = top->bus___05Ferror;
    tick();
    top->bus___05Fvalid = 0; top->eval();
    if (op == BUS_WRITE || op == BUS_RESET) {
        if (err_now && !err_flag) { err_flag = true; err_addr = addr; }
        return 0;
    }
    guard = 0;
    while (!top->bus___05Fr_valid) { tick(); top->eval(); if (++guard > 4000000000ull) { fprintf(stderr, "chipsim: no reply\n"); exit(4); } }
    uint32_t d = top->bus___05Fr_data;
    if (top->bus___05Ferror && !err_flag) { err_flag = true; err_addr = addr; }
    tick();
    return d;
}

static void reply_header(uint16_t n) {
    outbuf.push_back(err_flag ? 1 : 0); outbuf.push_back(0);
    outbuf.push_back(n & 0xFF); outbuf.push_back(n >> 8);
    put32(err_addr);
    err_flag = false; err_addr = 0;
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    top = new Vchip;
    top->rst = 1; top->bus___05Fvalid = 0;
    for (int i = 0; i < 4; i++) tick();
    top->rst = 0; top->eval();
    tick();
    std::vector<uint32_t> words;
    for (;;) {
        uint8_t h[8];
        if (!read_exact(h, 8)) break;
        int op = h[0];
        uint32_t n = h[2] | (h[3] << 8);
        uint32_t addr = h[4] | (h[5] << 8) | (h[6] << 16) | ((uint32_t)h[7] << 24);
        if (op == H_WRITE || op == H_WRITE_FIX || op == H_RUN) {
            uint32_t cnt = (op == H_RUN) ? 1 : n;
            words.resize(cnt);
            if (cnt && !read_exact(words.data(), 4 * cnt)) break;
        }
        switch (op) {
        case H_READ: case H_READ_FIX: {
            words.resize(n);
            for (uint32_t i = 0; i < n; i++) words[i] = bus(BUS_READ, op == H_READ ? addr + i : addr, 0);
            reply_header(n);
            for (uint32_t i = 0; i < n; i++) put32(words[i]);
            flush_out();
            break;
        }
        case H_WRITE: for (uint32_t i = 0; i < n; i++) bus(BUS_WRITE, addr + i, words[i]); break;
        case H_WRITE_FIX: for (uint32_t i = 0; i < n; i++) bus(BUS_WRITE, addr, words[i]); break;
        case H_RUN: { uint32_t r = bus(BUS_RUN, 0, words[0]); reply_header(1); put32(r); flush_out(); break; }
        case H_RESET: bus(BUS_RESET, 0, 0); break;
        case H_SYNC: reply_header(0); flush_out(); break;
        case H_STATS: reply_header(2); put32((uint32_t)cycles); put32((uint32_t)(cycles >> 32)); flush_out(); break;
        case H_QUIT: delete top; return 0;
        default: fprintf(stderr, "chipsim: bad op %d\n", op); return 2;
        }
    }
    delete top;
    return 0;
}
