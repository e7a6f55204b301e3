// plasticore simulated board: a Verilated board top whose UART pins are bridged to a pseudo-terminal.
//
// The model is clocked at full Verilator speed; no Python runs per cycle.  The harness is the
// "wire": it serialises bytes the host writes to the pty onto uart_rx at exactly clocks_per_bit
// clocks per bit (back to back, like a UART running flat out) and deserialises uart_tx into bytes
// it writes back to the pty.  Bytes are never dropped by the harness: what the host writes waits
// in the pty/harness buffers until the wire is free, exactly like a USB-serial bridge; whether the
// *board* keeps up is the RTL's business (flow control in plasticore/protocol.py).
//
// Usage:
//   simboard --cpb N [--poll N] [--idle N]   print the pty path (the Python side makes any symlink), run until SIGTERM
//   simboard --cpb N --bench-cycles N                       native loop (no pty): print cycles/s
//
// The top must have ports clk, uart_rx, uart_tx, busy (see plasticore/rtl/board.py); busy
// lets the harness sleep in poll() while the board is idle and the pty is silent.

#include "Vtop.h"
#include "verilated.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

struct Args {
    int cpb = 8;
    int poll = 256;
    long idle = 20000;  // idle cycles before sleeping in poll()
    long long bench_cycles = 0;
};

static Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; i++) {
        std::string s = argv[i];
        auto next = [&](void) -> const char* {
            if (i + 1 >= argc) { fprintf(stderr, "simboard: %s needs a value\n", s.c_str()); exit(2); }
            return argv[++i];
        };
        if (s == "--cpb") a.cpb = atoi(next());
        else if (s == "--poll") a.poll = atoi(next());
        else if (s == "--idle") a.idle = atol(next());
        else if (s == "--bench-cycles") a.bench_cycles = atoll(next());
        else if (s.rfind("+verilator", 0) == 0) continue;
        else { fprintf(stderr, "simboard: unknown argument %s\n", s.c_str()); exit(2); }
    }
    if (a.cpb < 4 || a.poll < 1) { fprintf(stderr, "simboard: bad --cpb/--poll\n"); exit(2); }
    return a;
}

static inline void tick(Vtop* top) {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
}

// The top has no reset input: it starts from its initial values (see sim/simboard.py _SimTop).
static void reset(Vtop* top) {
    top->uart_rx = 1;
    top->clk = 0;
    top->eval();
    for (int i = 0; i < 8; i++) tick(top);
}

static double cpu_s() {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    Args a = parse(argc, argv);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    Vtop* top = new Vtop;
    reset(top);

    if (a.bench_cycles > 0) {  // native loop: same model, no pty, line idle
        double t0 = now_s(), c0 = cpu_s();
        for (long long c = 0; c < a.bench_cycles; c++) tick(top);
        double dt = now_s() - t0, dc = cpu_s() - c0;
        printf("cycles %lld seconds %.6f cpu %.6f rate %.1f cpu_rate %.1f\n", a.bench_cycles, dt, dc,
               a.bench_cycles / dt, a.bench_cycles / dc);
        delete top;
        return 0;
    }

    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) { perror("simboard: posix_openpt"); return 1; }
    const char* sname = ptsname(m);
    if (!sname) { perror("simboard: ptsname"); return 1; }
    std::string path = sname;
    // Keep the slave open ourselves (so the master never sees a hangup between clients) and raw.
    int s = open(path.c_str(), O_RDWR | O_NOCTTY);
    if (s < 0) { perror("simboard: open slave"); return 1; }
    struct termios t;
    tcgetattr(s, &t);
    cfmakeraw(&t);
    tcsetattr(s, TCSANOW, &t);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    printf("%s\n", path.c_str());
    fflush(stdout);

    const int cpb = a.cpb;
    // host -> board serialiser
    std::deque<uint8_t> inbuf;
    int ser_bit = -1, ser_cnt = 0;
    uint16_t ser_frame = 0;
    // board -> host deserialiser
    std::vector<uint8_t> outbuf;
    size_t out_off = 0;
    int des_bit = -1, des_cnt = 0;
    uint8_t des_byte = 0;
    uint64_t cycles = 0, bytes_in = 0, bytes_out = 0, framing_errors = 0, sleeps = 0;
    long idle_cycles = 0;
    uint8_t tmp[8192];
    double t0 = now_s();

    while (!g_stop) {
        for (int k = 0; k < a.poll; k++) {
            // drive uart_rx
            if (ser_bit < 0 && !inbuf.empty()) {
                ser_frame = (uint16_t)((1u << 9) | ((unsigned)inbuf.front() << 1));
                inbuf.pop_front();
                ser_bit = 0;
                ser_cnt = cpb;
            }
            top->uart_rx = ser_bit < 0 ? 1 : (ser_frame >> ser_bit) & 1;
            if (ser_bit >= 0 && --ser_cnt == 0) {
                ser_cnt = cpb;
                if (++ser_bit == 10) ser_bit = -1;
            }
            tick(top);
            // sample uart_tx (after the edge)
            int tx = top->uart_tx;
            if (des_bit < 0) {
                if (!tx) { des_bit = 0; des_cnt = cpb + cpb / 2; des_byte = 0; }
            } else if (--des_cnt == 0) {
                if (des_bit < 8) {
                    des_byte |= (uint8_t)(tx << des_bit);
                    des_bit++;
                    des_cnt = cpb;
                } else {
                    if (tx) outbuf.push_back(des_byte); else framing_errors++;
                    des_bit = -1;
                }
            }
        }
        cycles += (uint64_t)a.poll;

        // pty I/O
        if (out_off < outbuf.size()) {
            ssize_t n = write(m, outbuf.data() + out_off, outbuf.size() - out_off);
            if (n > 0) {
                out_off += (size_t)n;
                bytes_out += (uint64_t)n;
                if (out_off == outbuf.size()) { outbuf.clear(); out_off = 0; }
            }
        }
        if (inbuf.size() < sizeof tmp) {
            ssize_t n = read(m, tmp, sizeof tmp);
            if (n > 0) {
                inbuf.insert(inbuf.end(), tmp, tmp + n);
                bytes_in += (uint64_t)n;
            }
        }

        bool quiet = inbuf.empty() && ser_bit < 0 && des_bit < 0 && outbuf.empty() && !top->busy;
        idle_cycles = quiet ? idle_cycles + a.poll : 0;
        if (idle_cycles >= a.idle) {
            struct pollfd p = {m, POLLIN, 0};
            ::poll(&p, 1, 100);  // wakes as soon as the host writes
            sleeps++;
            idle_cycles = 0;
        }
    }
    double dt = now_s() - t0, dc = cpu_s();
    fprintf(stderr,
            "simboard: cycles %llu seconds %.3f cpu %.3f bytes_in %llu bytes_out %llu tx_framing_errors %llu "
            "sleeps %llu\n",
            (unsigned long long)cycles, dt, dc, (unsigned long long)bytes_in, (unsigned long long)bytes_out,
            (unsigned long long)framing_errors, (unsigned long long)sleeps);
    top->final();
    delete top;
    close(s);
    close(m);
    return 0;
}
