// The "native" engine's kernels: a recurrent layer's whole loop over time in one XLA FFI call,
// forward and backward, for the LSTM, both GRU forms and the Elman RNN.
//
// The engine's Python side (lstmjax/engines/native/__init__.py) documents the contract; in
// short, with row-major arrays, T steps, B sequences, H units and G gate columns:
//
//   forward(x_proj[T*B,G], bias[G], w1, w2, rbias, h0[B,H], c0, valid[T,B], resets[T,B], mask)
//     -> acts[T*B,G] (x_proj's buffer, aliased), ys[T,B,H], h[B,H], c, h_in[T,B,H], aux[T,B,H]
//   backward(acts, h_in, aux, w1, w2, d_ys[T,B,H], d_h[B,H], d_c, valid, resets, mask)
//     -> d_gates[T*B,G] (acts's buffer, aliased), d_h0[B,H], d_c0, d_aux[T,B,H]
//
// The gate buffers are two-dimensional, as the matmuls before and after the calls make and use
// them: XLA copies an aliased operand that reaches the call through a reshape.
//
// An optional operand or result is an empty array ([0]); `valid`, `resets` and `mask` are the
// engines' lengths, resets and recurrent-dropout mask. Per step the forward pass does one GEMM
// (two for the TF1 GRU) added to x_proj's step into the gate buffer, then the gate math in one
// pass over the rows; the
// backward pass does the gate math's derivative in place, then the GEMM that sends the gate
// cotangents back to the previous state. The weight gradients are not accumulated here: the
// caller computes them after the loop as one GEMM each from `h_in`, `aux` and `d_gates`.
//
// Threads: a call splits the H units into parts, one per core this process may run on (at most
// lstmjax_native_set_threads' count), and runs every step as one or a few phases, each a
// parallel loop over the parts with a barrier after it. A part does the GEMM columns of its
// units' gates, then those units' gate math, so a forward LSTM step is one phase. The calling
// thread and (cores - 1) worker threads, started on first use and asleep between calls, share the
// parts; XLA's own threads wait while the call runs, so the cores are not oversubscribed. The
// caller claims parts itself, so a call never waits for a worker that is busy elsewhere (with
// another call, in a program that runs two layers at once).
//
// The per-step products are this file's own: each call packs the recurrent kernel once into
// panels of 64-byte columns, and a register-blocked loop multiplies up to 8 rows by 2 panels at
// a time (16 vector accumulators). A BLAS called per step repacks the kernel every step, which
// cost more than the product itself at small B (benchmarks/NOTES.md). Templated on float and
// double (double is for the finite-difference tests).

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// The most threads a call uses (0: one per core).
std::atomic<int> max_threads{0};

// A part: the units [begin, end).
struct Units {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};

// ---------------------------------------------------------------------------------------------
// The per-step products on weights packed once per call.
// ---------------------------------------------------------------------------------------------

// A weight matrix packed for the per-step products: its columns in panels of kWidth (one 64-byte
// vector), each panel [K][kWidth] contiguous and zero-padded past the group's last column. The
// columns come in `groups` groups of H (the gates), each starting a new panel.
template <typename T>
struct Panels {
  static constexpr int64_t kWidth = 64 / sizeof(T);
  int64_t depth = 0, hidden = 0, blocks = 0;
  int groups = 0;
  std::vector<T> data;

  void resize(int64_t k, int64_t h, int g) {
    depth = k, hidden = h, groups = g, blocks = (h + kWidth - 1) / kWidth;
    data.resize(groups * blocks * depth * kWidth);
  }
  T* panel(int g, int64_t j) { return data.data() + (g * blocks + j) * depth * kWidth; }
  const T* panel(int g, int64_t j) const {
    return data.data() + (g * blocks + j) * depth * kWidth;
  }

  // Packs the panels of units u from w: the matrix [K, groups * H] with row stride ld, or, if
  // transposed, the transpose of w stored [groups * H, K] with row stride ld.
  void pack(const T* w, int64_t ld, bool transposed, Units u) {
    for (int g = 0; g < groups; ++g) {
      for (int64_t j = u.begin / kWidth; j * kWidth < u.end; ++j) {
        T* out = panel(g, j);
        std::fill(out, out + depth * kWidth, T(0));
        for (int64_t c = 0; c < kWidth && j * kWidth + c < hidden; ++c) {
          const int64_t column = g * hidden + j * kWidth + c;
          if (transposed) {
            const T* row = w + column * ld;
            for (int64_t k = 0; k < depth; ++k) out[k * kWidth + c] = row[k];
          } else {
            for (int64_t k = 0; k < depth; ++k) out[k * kWidth + c] = w[k * ld + column];
          }
        }
      }
    }
  }
};

// One 64-byte vector of T (a zmm register with AVX-512, two ymm with AVX2).
template <typename T>
struct VectorOf;
template <>
struct VectorOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VectorOf<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <typename T>
using Vector = typename VectorOf<T>::type;

// C[0:R, 0:cols] = [base +] A[0:R, 0:K] @ [panel_0 ... panel_{P-1}] (P adjacent panels, the last
// one `cols` wide; base, if given, laid out as C), with R * P independent vector accumulators:
// per k, P vector loads of the panels and R broadcasts of A feed R * P fused multiply-adds.
template <typename T, int R, int P>
void panel_product(const T* __restrict a, int64_t lda, const T* const* panels, int64_t depth,
                   const T* base, T* c, int64_t ldc, int64_t cols) {
  constexpr int64_t W = Panels<T>::kWidth;
  Vector<T> acc[R][P] = {};
  const T* __restrict p0 = panels[0];
  const T* __restrict p1 = panels[P - 1];
  for (int64_t k = 0; k < depth; ++k) {
    Vector<T> w[P];
    std::memcpy(&w[0], p0 + k * W, sizeof(w[0]));
    if constexpr (P == 2) std::memcpy(&w[1], p1 + k * W, sizeof(w[1]));
    for (int r = 0; r < R; ++r) {
      const T x = a[r * lda + k];
      for (int q = 0; q < P; ++q) acc[r][q] += x * w[q];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < P; ++q) {
      T* row = c + r * ldc + q * W;
      const T* from = base ? base + r * ldc + q * W : nullptr;
      const int64_t width = q == P - 1 ? cols : W;
      if (width == W) {
        Vector<T> out = acc[r][q];
        if (from) {
          Vector<T> add;
          std::memcpy(&add, from, sizeof(add));
          out += add;
        }
        std::memcpy(row, &out, sizeof(out));
      } else {
        for (int64_t k = 0; k < width; ++k) row[k] = from ? from[k] + acc[r][q][k] : acc[r][q][k];
      }
    }
  }
}

// Rows per block: R * P accumulators and P panel vectors must fit the vector registers (32 zmm
// with AVX-512; 16 ymm otherwise, where a 64-byte vector takes two).
#if defined(__AVX512F__)
constexpr int64_t kRowBlock = 8;
#else
constexpr int64_t kRowBlock = 3;
#endif

template <typename T, int P>
void panel_rows(int64_t m, const T* a, int64_t lda, const T* const* panels, int64_t depth,
                const T* base, T* c, int64_t ldc, int64_t cols) {
  for (int64_t r = 0; r < m; r += kRowBlock) {
    const T* ar = a + r * lda;
    const T* br = base ? base + r * ldc : nullptr;
    T* cr = c + r * ldc;
    switch (std::min<int64_t>(kRowBlock, m - r)) {
      case 8: panel_product<T, 8, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 7: panel_product<T, 7, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 6: panel_product<T, 6, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 5: panel_product<T, 5, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 4: panel_product<T, 4, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 3: panel_product<T, 3, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      case 2: panel_product<T, 2, P>(ar, lda, panels, depth, br, cr, ldc, cols); break;
      default: panel_product<T, 1, P>(ar, lda, panels, depth, br, cr, ldc, cols);
    }
  }
}

// C[:, group g's units u] = [base +] A[M, K] @ panels, C (and base) pointing at column 0 of
// group g; the panels two at a time.
template <typename T>
void product(int64_t m, const T* a, int64_t lda, const Panels<T>& p, int g, Units u,
             const T* base, T* c, int64_t ldc) {
  constexpr int64_t W = Panels<T>::kWidth;
  for (int64_t j = u.begin / W; j * W < u.end; j += 2) {
    const T* panels[2] = {p.panel(g, j), nullptr};
    if ((j + 1) * W < u.end) {
      panels[1] = p.panel(g, j + 1);
      panel_rows<T, 2>(m, a, lda, panels, p.depth, base ? base + j * W : nullptr, c + j * W,
                       ldc, std::min(W, u.end - (j + 1) * W));
    } else {
      panel_rows<T, 1>(m, a, lda, panels, p.depth, base ? base + j * W : nullptr, c + j * W,
                       ldc, std::min(W, u.end - j * W));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The gate math's functions. float: the rational approximation of tanh that Eigen and XLA:CPU
// use (about 1 ulp in [-7.9, 7.9], saturated outside), which the compiler vectorizes; double:
// the C library's.
// ---------------------------------------------------------------------------------------------

inline float tanh_(float x) {
  const float clamp = 7.90531110763549805f;
  x = std::min(std::max(x, -clamp), clamp);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

inline double tanh_(double x) { return std::tanh(x); }

// The logistic function as lstmjax.cells.sigmoid writes it: (1 + tanh(x / 2)) / 2.
template <typename T>
inline T sigmoid_(T x) {
  return T(0.5) * tanh_(T(0.5) * x) + T(0.5);
}

// ---------------------------------------------------------------------------------------------
// The team: a call's threads, running one phase at a time over the parts.
// ---------------------------------------------------------------------------------------------

inline void pause_() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// What the caller and the workers share. A phase is a generation: the caller publishes the
// phase's function and generation g in `claim` ((g << 32) | next part); every participant
// claims parts by compare-and-swap on it (so a part of generation g is never taken for another)
// and counts the parts it finished in `done`. Kept alive by the workers that hold it, so one
// that arrives after the call has returned finds `finished` and leaves.
struct TeamState {
  std::atomic<uint64_t> claim{0};
  std::atomic<int> done{0};
  std::atomic<bool> finished{false};
  void (*call)(void*, int) = nullptr;
  void* context = nullptr;
  int parts = 1;

  // Runs parts of generation g until none is left to claim.
  void work(uint32_t g) {
    uint64_t current = claim.load(std::memory_order_acquire);
    while ((current >> 32) == g && static_cast<int>(current & 0xffffffffu) < parts) {
      if (claim.compare_exchange_weak(current, current + 1, std::memory_order_acq_rel)) {
        call(context, static_cast<int>(current & 0xffffffffu));
        done.fetch_add(1, std::memory_order_release);
        current = claim.load(std::memory_order_acquire);
      }
    }
  }

  // A worker's share: join every phase until the call finishes.
  void serve() {
    uint32_t seen = 0;
    for (int idle = 0; !finished.load(std::memory_order_acquire);) {
      const uint32_t g = claim.load(std::memory_order_acquire) >> 32;
      if (g != seen) {
        work(g);
        seen = g, idle = 0;
      } else if (++idle < 4096) {
        pause_();
      } else {
        std::this_thread::yield();
      }
    }
  }
};

// The worker threads: started on first use, one fewer than the cores; each sleeps until a call
// publishes its team, serves it until it finishes, and sleeps again.
class Workers {
 public:
  static Workers& get() {
    static Workers* workers = new Workers();  // never destroyed: detached threads use it
    return *workers;
  }

  void join(const std::shared_ptr<TeamState>& team, int helpers) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(started_) < helpers) {
        std::thread([this] { loop(); }).detach();
        ++started_;
      }
      current_ = team;
      ++epoch_;
    }
    wake_.notify_all();
  }

 private:
  void loop() {
    // A new thread inherits its creator's affinity, and the creator may be an XLA thread pinned
    // to one core: run on every core of the process instead.
    cpu_set_t set;
    if (sched_getaffinity(getpid(), sizeof(set), &set) == 0) {
      sched_setaffinity(0, sizeof(set), &set);
    }
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<TeamState> team;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return epoch_ != seen; });
        seen = epoch_;
        team = current_;
      }
      team->serve();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<TeamState> current_;
  uint64_t epoch_ = 0;
  size_t started_ = 0;
};

class Team {
 public:
  explicit Team(int parts) : state_(std::make_shared<TeamState>()) {
    state_->parts = parts;
    if (parts > 1) Workers::get().join(state_, parts - 1);
  }
  ~Team() { state_->finished.store(true, std::memory_order_release); }

  int parts() const { return state_->parts; }

  // f(part) for every part, on whichever participants claim them; returns when all are done.
  template <typename F>
  void run(F& f) {
    TeamState& s = *state_;
    if (s.parts == 1) return f(0);
    s.call = [](void* context, int part) { (*static_cast<F*>(context))(part); };
    s.context = &f;
    s.done.store(0, std::memory_order_relaxed);
    const uint32_t g = ++generation_;
    s.claim.store(static_cast<uint64_t>(g) << 32, std::memory_order_release);
    s.work(g);
    while (s.done.load(std::memory_order_acquire) < s.parts) pause_();
  }

 private:
  std::shared_ptr<TeamState> state_;
  uint32_t generation_ = 0;
};

// ---------------------------------------------------------------------------------------------
// The layer: shapes, the optional operands, the parts, and the per-step bookkeeping.
// ---------------------------------------------------------------------------------------------

enum Cell : int32_t { kLSTM = 0, kGRU = 1, kGRUResetAfter = 2, kRNN = 3 };

int gate_count(int32_t cell) {
  switch (cell) {
    case kLSTM: return 4;
    case kGRU: case kGRUResetAfter: return 3;
    default: return 1;
  }
}

template <typename T>
T* data_or_null(ffi::AnyBuffer buffer) {
  return buffer.element_count() ? reinterpret_cast<T*>(buffer.untyped_data()) : nullptr;
}

// The cores this process may run on: its main thread's affinity mask (taskset, cgroup cpusets;
// the calling thread's own may be pinned to one core).
int64_t core_count() {
  cpu_set_t set;
  if (sched_getaffinity(getpid(), sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// How many parts: one per core, each at least 16 units (one AVX-512 vector of floats).
int part_count(int64_t hidden) {
  static const int64_t cores = core_count();
  int64_t threads = cores;
  if (max_threads.load() > 0) threads = std::min<int64_t>(threads, max_threads.load());
  return static_cast<int>(std::max<int64_t>(1, std::min(threads, hidden / 16)));
}

// Part p of `parts` over `hidden` units, boundaries on multiples of 16.
Units part_units(int p, int parts, int64_t hidden) {
  const int64_t chunk = ((hidden + parts - 1) / parts + 15) / 16 * 16;
  return {std::min(hidden, p * chunk), std::min(hidden, (p + 1) * chunk)};
}

// Pointers into one call's operands, with their sizes.
template <typename T>
struct Layer {
  int64_t steps, batch, hidden, gates;
  bool reverse;
  const bool* valid;   // [T, B] or null: every step valid
  const bool* resets;  // [T, B] or null: no resets
  const T* mask;       // [B, H] or null: no recurrent dropout

  int64_t step_at(int64_t i) const { return reverse ? steps - 1 - i : i; }
  bool is_valid(int64_t t, int64_t b) const { return valid == nullptr || valid[t * batch + b]; }
  bool is_reset(int64_t t, int64_t b) const { return resets != nullptr && resets[t * batch + b]; }

  // Before step t, for units u: zero the carry of the sequences that restart there (valid steps
  // only: an invalid step keeps the carry it was given), and write the recurrent matmul's
  // operand, h times the dropout mask, to h_in[t]; c_in[t] gets the cell state (LSTM).
  void enter(int64_t t, Units u, T* h, T* c, T* h_in, T* c_in) const {
    const int64_t H = hidden, n = u.size();
    for (int64_t b = 0; b < batch; ++b) {
      T* hb = h + b * H + u.begin;
      T* cb = c ? c + b * H + u.begin : nullptr;
      if (is_valid(t, b) && is_reset(t, b)) {
        std::fill(hb, hb + n, T(0));
        if (cb) std::fill(cb, cb + n, T(0));
      }
      T* out = h_in + t * batch * H + b * H + u.begin;
      if (mask) {
        const T* mb = mask + b * H + u.begin;
        for (int64_t k = 0; k < n; ++k) out[k] = hb[k] * mb[k];
      } else {
        std::copy(hb, hb + n, out);
      }
      if (c_in) std::copy(cb, cb + n, c_in + t * batch * H + b * H + u.begin);
    }
  }

  // After the backward step t, for units u: the cotangent of the carry entering it. Where the
  // step was valid, dh = (dh_rec [+ direct]) * mask, and dh = dc = 0 where the carry was reset;
  // invalid steps pass the cotangents through unchanged.
  void leave(int64_t t, Units u, const T* dh_rec, const T* direct, T* dh, T* dc) const {
    const int64_t H = hidden, n = u.size();
    for (int64_t b = 0; b < batch; ++b) {
      if (!is_valid(t, b)) continue;
      const int64_t at = b * H + u.begin;
      T* out = dh + at;
      if (is_reset(t, b)) {
        std::fill(out, out + n, T(0));
        if (dc) std::fill(dc + at, dc + at + n, T(0));
        continue;
      }
      const T* mb = mask ? mask + at : nullptr;
      for (int64_t k = 0; k < n; ++k) {
        const T d = direct ? dh_rec[at + k] + direct[at + k] : dh_rec[at + k];
        out[k] = mb ? d * mb[k] : d;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Gate math for n units of one row (one sequence at one step), forward and backward. Gate g of
// unit k is at [g * H + k]: the pointers are offset to the part's first unit.
// ---------------------------------------------------------------------------------------------

// LSTM (lstmjax.cells.lstm_update without peepholes or projection). a: pre-activations in (bias
// not yet added), activations i, j, f, o out; c: in and out; h, y: out.
template <typename T>
void lstm_row(T* __restrict a, const T* __restrict bias, T* __restrict c, T* __restrict h,
              T* __restrict y, int64_t n, int64_t H, T forget_bias, T clip) {
  for (int64_t k = 0; k < n; ++k) {
    const T i = sigmoid_(a[k] + bias[k]);
    const T j = tanh_(a[H + k] + bias[H + k]);
    const T f = sigmoid_(a[2 * H + k] + bias[2 * H + k] + forget_bias);
    const T o = sigmoid_(a[3 * H + k] + bias[3 * H + k]);
    T c_new = f * c[k] + i * j;
    if (clip > 0) c_new = std::min(std::max(c_new, -clip), clip);
    const T h_new = o * tanh_(c_new);
    a[k] = i, a[H + k] = j, a[2 * H + k] = f, a[3 * H + k] = o;
    c[k] = c_new, h[k] = h_new, y[k] = h_new;
  }
}

// a: activations in, pre-activation cotangents out; c_in: the cell state entering the step;
// dh: cotangent of h' (carry + output); dc: of c' in, of c out.
template <typename T>
void lstm_row_backward(T* __restrict a, const T* __restrict c_in, const T* __restrict dh,
                       T* __restrict dc, int64_t n, int64_t H, T clip) {
  for (int64_t k = 0; k < n; ++k) {
    const T i = a[k], j = a[H + k], f = a[2 * H + k], o = a[3 * H + k];
    T c_new = f * c_in[k] + i * j;
    bool clipped = false;
    if (clip > 0) {
      clipped = c_new > clip || c_new < -clip;
      c_new = std::min(std::max(c_new, -clip), clip);
    }
    const T tc = tanh_(c_new);
    T dc_new = dc[k] + dh[k] * o * (T(1) - tc * tc);
    if (clipped) dc_new = T(0);
    a[k] = dc_new * j * i * (T(1) - i);
    a[H + k] = dc_new * i * (T(1) - j * j);
    a[2 * H + k] = dc_new * c_in[k] * f * (T(1) - f);
    a[3 * H + k] = dh[k] * tc * o * (T(1) - o);
    dc[k] = dc_new * f;
  }
}

// GRU, cuDNN form. x: the input's pre-activations (may be a itself); a: r, u, n out; rec: h_in @ W_hidden; rbias:
// the candidate's recurrent bias; hn (out): rec_n + rbias, kept for the backward pass.
template <typename T>
void gru_after_row(const T* x, T* a, const T* __restrict bias,
                   const T* __restrict rec,
                   const T* __restrict rbias, const T* __restrict h_in, T* __restrict hn,
                   T* __restrict h, T* __restrict y, int64_t n, int64_t H) {
  for (int64_t k = 0; k < n; ++k) {
    const T r = sigmoid_(x[k] + bias[k] + rec[k]);
    const T u = sigmoid_(x[H + k] + bias[H + k] + rec[H + k]);
    const T hc = rec[2 * H + k] + rbias[k];
    const T c = tanh_(x[2 * H + k] + bias[2 * H + k] + r * hc);
    const T h_new = u * h_in[k] + (T(1) - u) * c;
    a[k] = r, a[H + k] = u, a[2 * H + k] = c;
    hn[k] = hc, h[k] = h_new, y[k] = h_new;
  }
}

// drec (out): the cotangent of h_in @ W_hidden (its candidate third also rbias's); direct (out):
// dh_in through u * h_in.
template <typename T>
void gru_after_row_backward(T* __restrict a, const T* __restrict hn, const T* __restrict h_in,
                            const T* __restrict dh, T* __restrict drec, T* __restrict direct,
                            int64_t n, int64_t H) {
  for (int64_t k = 0; k < n; ++k) {
    const T r = a[k], u = a[H + k], c = a[2 * H + k];
    const T dc = dh[k] * (T(1) - u) * (T(1) - c * c);
    const T dr = dc * hn[k] * r * (T(1) - r);
    const T du = dh[k] * (h_in[k] - c) * u * (T(1) - u);
    a[k] = dr, a[H + k] = du, a[2 * H + k] = dc;
    drec[k] = dr, drec[H + k] = du, drec[2 * H + k] = dc * r;
    direct[k] = dh[k] * u;
  }
}

// ---------------------------------------------------------------------------------------------
// The loops over time, each step one or more phases over the parts.
// ---------------------------------------------------------------------------------------------

template <typename T>
struct Forward {
  Layer<T> layer;
  int32_t cell;
  T forget_bias, clip;
  const T* x_proj;  // [T, B, G]: the input's pre-activations (bias not added)
  T* acts;          // [T, B, G]: the activations
  const T* bias;    // [G]
  const T* w1;      // LSTM, RNN: [H, G]; GRU-after: [H, 3H]; GRU: [H, 2H]
  const T* w2;      // GRU: [H, H]
  const T* rbias;   // GRU-after: [H]
  T *ys, *h, *c;    // [T, B, H]; carries [B, H]
  T *h_in, *aux;    // [T, B, H]; aux: LSTM c_in, GRU-after hn, GRU r * h_in
  std::vector<T> rec;  // GRU-after: [B, 3H], h_in @ W_hidden
  Panels<T> w1_panels, w2_panels;

  void run(Team& team) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates;
    if (cell == kGRUResetAfter) rec.resize(B * G);
    const int groups = cell == kGRU ? 2 : gate_count(cell);
    w1_panels.resize(H, H, groups);
    if (cell == kGRU) w2_panels.resize(H, H, 1);
    T* c_in = cell == kLSTM ? aux : nullptr;
    const int parts = team.parts();
    int64_t t = 0, next = layer.step_at(0);
    auto start = [&](int p) {  // each part packs the panels of its units and enters step 0
      const Units u = part_units(p, parts, H);
      w1_panels.pack(w1, groups * H, false, u);
      if (cell == kGRU) w2_panels.pack(w2, H, false, u);
      layer.enter(next, u, h, c, h_in, c_in);
    };
    team.run(start);
    // One phase per step (two for the TF1 GRU); each ends by entering the next step.
    auto finish = [&](Units u, int64_t i) {
      if (i + 1 < layer.steps) layer.enter(layer.step_at(i + 1), u, h, c, h_in, c_in);
    };
    for (int64_t i = 0; i < layer.steps; ++i) {
      t = layer.step_at(i);
      auto step = [&](int p) {
        const Units u = part_units(p, parts, H);
        this->step(t, u);
        finish(u, i);
      };
      if (cell == kGRU) {
        auto gates = [&](int p) { gru_gates(t, part_units(p, parts, H)); };
        team.run(gates);
      }
      team.run(step);
    }
  }

  // An invalid step: zero output, carry kept.
  bool skip(int64_t t, int64_t b, Units u) const {
    if (layer.is_valid(t, b)) return false;
    T* y = ys + t * layer.batch * layer.hidden + b * layer.hidden + u.begin;
    std::fill(y, y + u.size(), T(0));
    return true;
  }

  // The products' columns of units u of every gate: out[:, g * H + u] = [base[:, g * H + u] +]
  // lhs @ w[:, g * H + u], from w's panels.
  void gate_columns(const Panels<T>& panels, Units u, const T* lhs, const T* base, T* out,
                    int64_t ldo) const {
    const int64_t B = layer.batch, H = layer.hidden;
    for (int g = 0; g < panels.groups; ++g) {
      product(B, lhs, H, panels, g, u, base ? base + g * H : nullptr, out + g * H, ldo);
    }
  }

  void step(int64_t t, Units u) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates, n = u.size();
    T* a = acts + t * B * G;
    const T* xp = x_proj + t * B * G;
    const T* hin = h_in + t * B * H;
    T* x = aux ? aux + t * B * H : nullptr;
    T* y = ys + t * B * H;
    const int64_t k0 = u.begin;
    switch (cell) {
      case kLSTM:
        gate_columns(w1_panels, u, hin, xp, a, G);
        for (int64_t b = 0; b < B; ++b) {
          if (skip(t, b, u)) continue;
          lstm_row(a + b * G + k0, bias + k0, c + b * H + k0, h + b * H + k0, y + b * H + k0, n,
                   H, forget_bias, clip);
        }
        break;
      case kGRUResetAfter:
        gate_columns(w1_panels, u, hin, nullptr, rec.data(), G);
        for (int64_t b = 0; b < B; ++b) {
          if (skip(t, b, u)) continue;
          gru_after_row(xp + b * G + k0, a + b * G + k0, bias + k0, rec.data() + b * G + k0, rbias + k0,
                        hin + b * H + k0, x + b * H + k0, h + b * H + k0, y + b * H + k0, n, H);
        }
        break;
      case kGRU:  // the candidate, after gru_gates' phase
        gate_columns(w2_panels, u, x, xp + 2 * H, a + 2 * H, G);
        for (int64_t b = 0; b < B; ++b) {
          if (skip(t, b, u)) continue;
          T* ab = a + b * G + k0;
          const T* hb = hin + b * H + k0;
          T *hn = h + b * H + k0, *yb = y + b * H + k0;
          for (int64_t k = 0; k < n; ++k) {
            const T z = ab[H + k];
            const T cand = tanh_(ab[2 * H + k] + bias[2 * H + k0 + k]);
            ab[2 * H + k] = cand;
            hn[k] = yb[k] = z * hb[k] + (T(1) - z) * cand;
          }
        }
        break;
      case kRNN:
        gate_columns(w1_panels, u, hin, xp, a, H);
        for (int64_t b = 0; b < B; ++b) {
          if (skip(t, b, u)) continue;
          T *ab = a + b * H + k0, *hb = h + b * H + k0, *yb = y + b * H + k0;
          for (int64_t k = 0; k < n; ++k) ab[k] = hb[k] = yb[k] = tanh_(ab[k] + bias[k0 + k]);
        }
        break;
    }
  }

  // TF1 GRU, first phase: [r, u] = sigmoid(x_g + h_in @ W_g) and r * h_in (into aux), for every
  // row; the candidate n = tanh(x_n + (r * h_in) @ W_n) needs all of r * h_in.
  void gru_gates(int64_t t, Units u) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates, k0 = u.begin;
    T* a = acts + t * B * G;
    const T* hin = h_in + t * B * H;
    T* rh = aux + t * B * H;
    gate_columns(w1_panels, u, hin, x_proj + t * B * G, a, G);
    for (int64_t b = 0; b < B; ++b) {
      T* ab = a + b * G + k0;
      const T* hb = hin + b * H + k0;
      T* rhb = rh + b * H + k0;
      for (int64_t k = 0; k < u.size(); ++k) {
        ab[k] = sigmoid_(ab[k] + bias[k0 + k]);
        ab[H + k] = sigmoid_(ab[H + k] + bias[H + k0 + k]);
        rhb[k] = ab[k] * hb[k];
      }
    }
  }
};

template <typename T>
struct Backward {
  Layer<T> layer;
  int32_t cell;
  T clip;
  T* acts;          // [T, B, G]: activations in, pre-activation cotangents out
  const T* h_in;    // [T, B, H]
  const T* aux;     // as Forward::aux
  const T *w1, *w2;
  const T* d_ys;    // [T, B, H]
  T *dh, *dc;       // [B, H]: the final carry's cotangents in, the initial carry's out
  T* d_aux;         // GRU-after: [T, B, H], cotangent of hn
  std::vector<T> dh_total, dh_rec, direct, drec;  // [B, H] (drec: [B, 3H], GRU-after)
  Panels<T> w1_panels, w2_panels;                // the transposed kernels

  void run(Team& team) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates;
    dh_total.resize(B * H), dh_rec.resize(B * H);
    if (cell == kGRU || cell == kGRUResetAfter) direct.resize(B * H);
    if (cell == kGRUResetAfter) drec.resize(B * G);
    const int64_t width = cell == kGRU ? 2 * H : G;  // w1's columns
    w1_panels.resize(width, H, 1);
    if (cell == kGRU) w2_panels.resize(H, H, 1);
    const int parts = team.parts();
    auto pack = [&](int p) {
      const Units u = part_units(p, parts, H);
      w1_panels.pack(w1, width, true, u);
      if (cell == kGRU) w2_panels.pack(w2, H, true, u);
    };
    team.run(pack);
    for (int64_t i = layer.steps - 1; i >= 0; --i) {
      const int64_t t = layer.step_at(i);
      auto gates = [&](int p) { gate_cotangents(t, part_units(p, parts, H)); };
      team.run(gates);
      if (cell == kGRU) {
        auto candidate = [&](int p) { gru_reset_cotangents(t, part_units(p, parts, H)); };
        team.run(candidate);
      }
      auto previous = [&](int p) { previous_state(t, part_units(p, parts, H)); };
      team.run(previous);
    }
  }

  // Phase 1: the gates' pre-activation cotangents for units u (in place of the activations).
  void gate_cotangents(int64_t t, Units u) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates, n = u.size(), k0 = u.begin;
    T* a = acts + t * B * G;
    const T* hin = h_in + t * B * H;
    const T* x = aux ? aux + t * B * H : nullptr;
    const T* dy = d_ys + t * B * H;
    const int gates = gate_count(cell);
    for (int64_t b = 0; b < B; ++b) {
      T* ab = a + b * G + k0;
      if (!layer.is_valid(t, b)) {  // no cotangent enters an invalid step
        for (int g = 0; g < gates; ++g) std::fill(ab + g * H, ab + g * H + n, T(0));
        if (cell == kGRUResetAfter) {
          for (int g = 0; g < 3; ++g) {
            std::fill(drec.data() + b * G + g * H + k0, drec.data() + b * G + g * H + k0 + n, T(0));
          }
          std::fill(d_aux + t * B * H + b * H + k0, d_aux + t * B * H + b * H + k0 + n, T(0));
        }
        continue;
      }
      const int64_t at = b * H + k0;
      T* d = dh_total.data() + at;
      for (int64_t k = 0; k < n; ++k) d[k] = dh[at + k] + dy[at + k];
      switch (cell) {
        case kLSTM:
          lstm_row_backward(ab, x + at, d, dc + at, n, H, clip);
          break;
        case kGRUResetAfter: {
          T* dr = drec.data() + b * G + k0;
          gru_after_row_backward(ab, x + at, hin + at, d, dr, direct.data() + at, n, H);
          std::copy(dr + 2 * H, dr + 2 * H + n, d_aux + t * B * H + at);
          break;
        }
        case kGRU:  // the update gate and the candidate; the reset gate after the candidate's GEMM
          for (int64_t k = 0; k < n; ++k) {
            const T z = ab[H + k], cand = ab[2 * H + k];
            ab[2 * H + k] = d[k] * (T(1) - z) * (T(1) - cand * cand);
            ab[H + k] = d[k] * (hin[at + k] - cand) * z * (T(1) - z);
            direct[at + k] = d[k] * z;
          }
          break;
        case kRNN:
          for (int64_t k = 0; k < n; ++k) ab[k] = d[k] * (T(1) - ab[k] * ab[k]);
          break;
      }
    }
  }

  // TF1 GRU, phase 2: d(r * h_in) for units u through the candidate's GEMM, then the reset gate.
  void gru_reset_cotangents(int64_t t, Units u) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates, n = u.size(), k0 = u.begin;
    T* a = acts + t * B * G;
    const T* hin = h_in + t * B * H;
    T* d_rh = dh_rec.data();
    product(B, a + 2 * H, G, w2_panels, 0, u, static_cast<const T*>(nullptr), d_rh, H);  // d(r * h_in) = d_n @ W_n^T
    for (int64_t b = 0; b < B; ++b) {
      if (!layer.is_valid(t, b)) continue;
      T* ab = a + b * G + k0;
      const int64_t at = b * H + k0;
      for (int64_t k = 0; k < n; ++k) {
        const T r = ab[k];
        ab[k] = d_rh[at + k] * hin[at + k] * r * (T(1) - r);
        direct[at + k] += d_rh[at + k] * r;
      }
    }
  }

  // Last phase: the previous state's cotangent for units u, dh_rec = d_out @ W^T (rows u of W).
  void previous_state(int64_t t, Units u) {
    const int64_t B = layer.batch, H = layer.hidden, G = layer.gates;
    const T* a = acts + t * B * G;
    const T* lhs = cell == kGRUResetAfter ? drec.data() : a;
    product(B, lhs, G, w1_panels, 0, u, static_cast<const T*>(nullptr), dh_rec.data(), H);
    layer.leave(t, u, dh_rec.data(), direct.empty() ? nullptr : direct.data(), dh,
                cell == kLSTM ? dc : nullptr);
  }
};

// ---------------------------------------------------------------------------------------------
// The FFI handlers: shapes checked at the boundary, then the loop for the buffers' float type.
// ---------------------------------------------------------------------------------------------

ffi::Error check(bool ok, const std::string& what) {
  return ok ? ffi::Error::Success()
            : ffi::Error(ffi::ErrorCode::kInvalidArgument, "lstmjax native kernel: " + what);
}

bool has_shape(ffi::AnyBuffer buffer, std::initializer_list<int64_t> dims) {
  auto got = buffer.dimensions();
  return got.size() == dims.size() && std::equal(dims.begin(), dims.end(), got.begin());
}

bool optional_shape(ffi::AnyBuffer buffer, std::initializer_list<int64_t> dims) {
  return buffer.element_count() == 0 || has_shape(buffer, dims);
}

bool same_shape(ffi::AnyBuffer a, ffi::AnyBuffer b) {
  auto x = a.dimensions(), y = b.dimensions();
  return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin());
}

// Every buffer of `floats` in the gate buffer's type: the kernel reads each as one type.
ffi::Error check_types(ffi::AnyBuffer acts, std::initializer_list<ffi::AnyBuffer> floats) {
  const bool ok = std::all_of(floats.begin(), floats.end(), [&](ffi::AnyBuffer buffer) {
    return buffer.element_type() == acts.element_type();
  });
  return check(ok, "every operand and result but valid and resets must have the gate buffer's "
                   "float type");
}

// `sequence` is a [T, B, H] operand or result (ys, d_ys); the gate buffer is [T * B, G].
ffi::Error check_layer(int32_t cell, ffi::AnyBuffer acts, ffi::AnyBuffer sequence,
                       ffi::AnyBuffer valid, ffi::AnyBuffer resets, ffi::AnyBuffer mask) {
  auto dims = sequence.dimensions();
  if (dims.size() != 3) return check(false, "ys must be [T, B, H]");
  const int64_t steps = dims[0], batch = dims[1], hidden = dims[2];
  if (cell < kLSTM || cell > kRNN) return check(false, "unknown cell kind");
  if (!has_shape(acts, {steps * batch, gate_count(cell) * hidden})) {
    return check(false, "the gate buffer must be [T * B, G] with G the cell's gates * H");
  }
  if (acts.element_type() != ffi::F32 && acts.element_type() != ffi::F64) {
    return check(false, "float32 or float64 only");
  }
  if (!optional_shape(valid, {steps, batch}) || !optional_shape(resets, {steps, batch}) ||
      valid.element_type() != ffi::PRED || resets.element_type() != ffi::PRED) {
    return check(false, "valid and resets must be bool[T, B] or empty");
  }
  if (!optional_shape(mask, {batch, hidden})) return check(false, "mask must be [B, H] or empty");
  return ffi::Error::Success();
}

// The recurrent kernels (w1, w2) and the states (h and, for the LSTM, c: [B, H]) of a layer
// whose gate buffer check_layer has accepted.
ffi::Error check_operands(int32_t cell, ffi::AnyBuffer sequence, ffi::AnyBuffer w1,
                          ffi::AnyBuffer w2, ffi::AnyBuffer h, ffi::AnyBuffer c) {
  auto dims = sequence.dimensions();
  const int64_t batch = dims[1], hidden = dims[2], gates = gate_count(cell) * hidden;
  const bool w_ok = cell == kGRU
      ? has_shape(w1, {hidden, 2 * hidden}) && has_shape(w2, {hidden, hidden})
      : has_shape(w1, {hidden, gates}) && w2.element_count() == 0;
  if (!w_ok) return check(false, "the recurrent kernels must be [H, G] ([H, 2H] and [H, H]: GRU)");
  const bool c_ok = cell == kLSTM ? has_shape(c, {batch, hidden}) : c.element_count() == 0;
  if (!has_shape(h, {batch, hidden}) || !c_ok) {
    return check(false, "the states must be [B, H] (c for the LSTM only)");
  }
  return ffi::Error::Success();
}

// The per-step arrays saved for the backward pass: h_in [T, B, H], and aux [T, B, H] (empty for
// the RNN, which saves none).
ffi::Error check_saved(int32_t cell, ffi::AnyBuffer sequence, ffi::AnyBuffer h_in,
                       ffi::AnyBuffer aux) {
  const bool aux_ok = cell == kRNN ? aux.element_count() == 0 : same_shape(aux, sequence);
  return check(same_shape(h_in, sequence) && aux_ok,
               "the saved h_in and aux must be [T, B, H] (no aux for the RNN)");
}

template <typename T>
Layer<T> layer_of(ffi::AnyBuffer acts, ffi::AnyBuffer sequence, int32_t reverse,
                  ffi::AnyBuffer valid, ffi::AnyBuffer resets, ffi::AnyBuffer mask) {
  auto dims = sequence.dimensions();
  return Layer<T>{dims[0], dims[1], dims[2], acts.dimensions()[1], reverse != 0,
                  data_or_null<bool>(valid), data_or_null<bool>(resets), data_or_null<T>(mask)};
}

template <typename T>
ffi::Error forward(ffi::AnyBuffer x_proj, ffi::AnyBuffer bias, ffi::AnyBuffer w1, ffi::AnyBuffer w2,
                   ffi::AnyBuffer rbias, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
                   ffi::AnyBuffer valid, ffi::AnyBuffer resets, ffi::AnyBuffer mask,
                   ffi::Result<ffi::AnyBuffer> acts, ffi::Result<ffi::AnyBuffer> ys,
                   ffi::Result<ffi::AnyBuffer> h, ffi::Result<ffi::AnyBuffer> c,
                   ffi::Result<ffi::AnyBuffer> h_in, ffi::Result<ffi::AnyBuffer> aux,
                   int32_t cell, int32_t reverse, double forget_bias, double cell_clip) {
  const int64_t H = h0.dimensions().back();
  Forward<T> run{layer_of<T>(*acts, *ys, reverse, valid, resets, mask), cell, T(forget_bias),
                 T(cell_clip), data_or_null<T>(x_proj), data_or_null<T>(*acts),
                 data_or_null<T>(bias), data_or_null<T>(w1), data_or_null<T>(w2), data_or_null<T>(rbias),
                 data_or_null<T>(*ys), data_or_null<T>(*h), data_or_null<T>(*c),
                 data_or_null<T>(*h_in), data_or_null<T>(*aux), {}, {}, {}};
  const int64_t BH = run.layer.batch * H;
  if (BH) {
    std::memcpy(run.h, h0.untyped_data(), BH * sizeof(T));
    if (run.c) std::memcpy(run.c, c0.untyped_data(), BH * sizeof(T));
  }
  if (run.layer.steps == 0 || BH == 0) return ffi::Error::Success();
  Team team(part_count(H));
  run.run(team);
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::AnyBuffer x_proj, ffi::AnyBuffer bias, ffi::AnyBuffer w1,
                       ffi::AnyBuffer w2, ffi::AnyBuffer rbias, ffi::AnyBuffer h0,
                       ffi::AnyBuffer c0, ffi::AnyBuffer valid, ffi::AnyBuffer resets,
                       ffi::AnyBuffer mask, ffi::Result<ffi::AnyBuffer> acts,
                       ffi::Result<ffi::AnyBuffer> ys, ffi::Result<ffi::AnyBuffer> h,
                       ffi::Result<ffi::AnyBuffer> c, ffi::Result<ffi::AnyBuffer> h_in,
                       ffi::Result<ffi::AnyBuffer> aux, int32_t cell, int32_t reverse,
                       double forget_bias, double cell_clip) {
  if (auto error = check_layer(cell, x_proj, *ys, valid, resets, mask); error.failure()) {
    return error;
  }
  if (auto error = check_operands(cell, *ys, w1, w2, h0, c0); error.failure()) return error;
  const int64_t hidden = h0.dimensions()[1], gates = x_proj.dimensions()[1];
  if (!has_shape(bias, {gates}) ||
      !(cell == kGRUResetAfter ? has_shape(rbias, {hidden}) : rbias.element_count() == 0)) {
    return check(false, "bias must be [G], and rbias [H] for the cuDNN-form GRU only");
  }
  if (!same_shape(*acts, x_proj)) return check(false, "acts must be shaped as x_proj");
  if (auto error = check_operands(cell, *ys, w1, w2, *h, *c); error.failure()) return error;
  if (auto error = check_saved(cell, *ys, *h_in, *aux); error.failure()) return error;
  if (auto error = check_types(x_proj, {bias, w1, w2, rbias, h0, c0, mask, *acts, *ys, *h, *c,
                                        *h_in, *aux});
      error.failure()) {
    return error;
  }
  auto args = std::forward_as_tuple(x_proj, bias, w1, w2, rbias, h0, c0, valid, resets, mask,
                                    acts, ys, h, c, h_in, aux, cell, reverse, forget_bias,
                                    cell_clip);
  if (x_proj.element_type() == ffi::F32) return std::apply(forward<float>, args);
  return std::apply(forward<double>, args);
}

template <typename T>
ffi::Error backward(ffi::AnyBuffer h_in, ffi::AnyBuffer aux, ffi::AnyBuffer w1,
                    ffi::AnyBuffer w2, ffi::AnyBuffer d_ys, ffi::AnyBuffer d_h,
                    ffi::AnyBuffer d_c, ffi::AnyBuffer valid, ffi::AnyBuffer resets,
                    ffi::AnyBuffer mask, ffi::Result<ffi::AnyBuffer> d_gates,
                    ffi::Result<ffi::AnyBuffer> d_h0, ffi::Result<ffi::AnyBuffer> d_c0,
                    ffi::Result<ffi::AnyBuffer> d_aux, int32_t cell, int32_t reverse,
                    double cell_clip) {
  const int64_t H = d_h.dimensions().back();
  Backward<T> run{layer_of<T>(*d_gates, d_ys, reverse, valid, resets, mask), cell, T(cell_clip),
                  data_or_null<T>(*d_gates), data_or_null<T>(h_in), data_or_null<T>(aux),
                  data_or_null<T>(w1), data_or_null<T>(w2), data_or_null<T>(d_ys),
                  data_or_null<T>(*d_h0), data_or_null<T>(*d_c0), data_or_null<T>(*d_aux),
                  {}, {}, {}, {}, {}, {}};
  const int64_t BH = run.layer.batch * H;
  if (BH) {
    std::memcpy(run.dh, d_h.untyped_data(), BH * sizeof(T));
    if (run.dc) std::memcpy(run.dc, d_c.untyped_data(), BH * sizeof(T));
  }
  if (run.layer.steps == 0 || BH == 0) return ffi::Error::Success();
  Team team(part_count(H));
  run.run(team);
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::AnyBuffer acts, ffi::AnyBuffer h_in, ffi::AnyBuffer aux,
                        ffi::AnyBuffer w1, ffi::AnyBuffer w2, ffi::AnyBuffer d_ys,
                        ffi::AnyBuffer d_h, ffi::AnyBuffer d_c, ffi::AnyBuffer valid,
                        ffi::AnyBuffer resets, ffi::AnyBuffer mask,
                        ffi::Result<ffi::AnyBuffer> d_gates, ffi::Result<ffi::AnyBuffer> d_h0,
                        ffi::Result<ffi::AnyBuffer> d_c0, ffi::Result<ffi::AnyBuffer> d_aux,
                        int32_t cell, int32_t reverse, double cell_clip) {
  if (auto error = check_layer(cell, acts, d_ys, valid, resets, mask); error.failure()) {
    return error;
  }
  if (auto error = check_operands(cell, d_ys, w1, w2, d_h, d_c); error.failure()) return error;
  if (auto error = check_saved(cell, d_ys, h_in, aux); error.failure()) return error;
  if (auto error = check_operands(cell, d_ys, w1, w2, *d_h0, *d_c0); error.failure()) {
    return error;
  }
  const bool d_aux_ok = cell == kGRUResetAfter ? same_shape(*d_aux, d_ys)
                                               : d_aux->element_count() == 0;
  if (!same_shape(*d_gates, acts) || !d_aux_ok) {
    return check(false, "d_gates must be shaped as acts, and d_aux as d_ys for the cuDNN-form "
                        "GRU only (else empty)");
  }
  if (auto error = check_types(acts, {h_in, aux, w1, w2, d_ys, d_h, d_c, mask, *d_gates, *d_h0,
                                      *d_c0, *d_aux});
      error.failure()) {
    return error;
  }
  if (acts.untyped_data() != d_gates->untyped_data()) {
    std::memcpy(d_gates->untyped_data(), acts.untyped_data(), acts.size_bytes());
  }
  auto args = std::forward_as_tuple(h_in, aux, w1, w2, d_ys, d_h, d_c, valid, resets, mask,
                                    d_gates, d_h0, d_c0, d_aux, cell, reverse, cell_clip);
  if (acts.element_type() == ffi::F32) return std::apply(backward<float>, args);
  return std::apply(backward<double>, args);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxRecurrenceForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // x_proj
                                  .Arg<ffi::AnyBuffer>()  // bias
                                  .Arg<ffi::AnyBuffer>()  // w1
                                  .Arg<ffi::AnyBuffer>()  // w2
                                  .Arg<ffi::AnyBuffer>()  // rbias
                                  .Arg<ffi::AnyBuffer>()  // h0
                                  .Arg<ffi::AnyBuffer>()  // c0
                                  .Arg<ffi::AnyBuffer>()  // valid
                                  .Arg<ffi::AnyBuffer>()  // resets
                                  .Arg<ffi::AnyBuffer>()  // mask
                                  .Ret<ffi::AnyBuffer>()  // acts
                                  .Ret<ffi::AnyBuffer>()  // ys
                                  .Ret<ffi::AnyBuffer>()  // h
                                  .Ret<ffi::AnyBuffer>()  // c
                                  .Ret<ffi::AnyBuffer>()  // h_in
                                  .Ret<ffi::AnyBuffer>()  // aux
                                  .Attr<int32_t>("cell")
                                  .Attr<int32_t>("reverse")
                                  .Attr<double>("forget_bias")
                                  .Attr<double>("cell_clip"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmjaxRecurrenceBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // acts
                                  .Arg<ffi::AnyBuffer>()  // h_in
                                  .Arg<ffi::AnyBuffer>()  // aux
                                  .Arg<ffi::AnyBuffer>()  // w1
                                  .Arg<ffi::AnyBuffer>()  // w2
                                  .Arg<ffi::AnyBuffer>()  // d_ys
                                  .Arg<ffi::AnyBuffer>()  // d_h
                                  .Arg<ffi::AnyBuffer>()  // d_c
                                  .Arg<ffi::AnyBuffer>()  // valid
                                  .Arg<ffi::AnyBuffer>()  // resets
                                  .Arg<ffi::AnyBuffer>()  // mask
                                  .Ret<ffi::AnyBuffer>()  // d_gates
                                  .Ret<ffi::AnyBuffer>()  // d_h0
                                  .Ret<ffi::AnyBuffer>()  // d_c0
                                  .Ret<ffi::AnyBuffer>()  // d_aux
                                  .Attr<int32_t>("cell")
                                  .Attr<int32_t>("reverse")
                                  .Attr<double>("cell_clip"));

// The most threads a kernel call uses (0, the default: one per core).
extern "C" __attribute__((visibility("default"))) void lstmjax_native_set_threads(int threads) {
  max_threads.store(threads);
}
