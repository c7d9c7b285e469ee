// Training views made per batch from their JPEG bytes, in one pass per view:
//
// TwoStreamFlowStacks: for each stack, decode the crop window of its 2L planes with TensorFlow's own JPEG
// decoder (the one behind tf.io.decode_and_crop_jpeg, same flags, so the same uint8 pixels), then mirror
// (and negate x), interleave to channels last [x1, y1, ...], resize bilinearly with half-pixel centres
// and normalise, writing each float straight into the batch. The TensorFlow-ops path (two_stream_tf.
// data.augment.flow_view followed by tf.data's batch copy) makes four passes over each 4 MB stack.
// TwoStreamRgbViews: the same for one RGB frame per view (augment.rgb_view), normalised per channel.
// A file a kept view cannot be decoded from (damaged tables, a size that differs from the window's frame)
// does not fail the op: the view is written as zeros and the file flagged in the `failed` output, so
// the pipeline drops the sample and names the file. TwoStreamJpegSizes reads frame sizes with libjpeg's
// header parser, 0x0 for a file it rejects, where tf.image.extract_jpeg_shape would raise.
// The pipelines take these ops when this file compiles (see __init__.py).
//
// Resize arithmetic follows TensorFlow's ResizeBilinear (half_pixel_centers): the same interpolation
// weights, horizontal lerps then the vertical one. The affine normalisation is applied after the
// interpolation instead of before it (it commutes up to float rounding, ~1e-7).
//
// Protocol frame size (attrs frame_height, frame_width; 0 = frames as stored): a JPEG stored at another
// size is decoded whole and resized to the frame size with OpenCV's fixed-point INTER_LINEAR arithmetic
// (two_stream_tf/data/frame_resize.py, value for value), and the crop window is taken from the resized
// frame, as TSN's Caffe tools resize every frame to 340x256 before cropping. accurate_dct selects
// libjpeg's accurate integer IDCT (JDCT_ISLOW, OpenCV's and dct_method="INTEGER_ACCURATE") instead of
// the fast one (JDCT_IFAST, tf.io.decode_jpeg's default).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE4_1__)
#include <smmintrin.h>
#endif
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/lib/jpeg/jpeg_mem.h"

namespace two_stream_tf {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::tstring;

REGISTER_OP("TwoStreamFlowStacks")
    .Input("contents: string")  // [N, 2L] JPEG bytes, planes in [x1, y1, x2, y2, ...] order
    .Input("windows: int32")    // [N, 4] top, left, height, width of the crop window
    .Input("flips: bool")       // [N] mirror the stack and negate x
    .Input("keep: bool")        // [N] false: the sample is dropped later, write zeros, decode nothing
    .Attr("image_size: int >= 1")
    .Attr("zero: float")        // value = (q - zero) * scale for quantised q
    .Attr("scale: float")
    .Attr("frame_height: int >= 0 = 0")  // protocol frame size; 0: frames as stored
    .Attr("frame_width: int >= 0 = 0")
    .Attr("accurate_dct: bool = false")
    .Output("stacks: float")    // [N, image_size, image_size, 2L]
    .Output("failed: bool")     // [N, 2L] planes of kept stacks that could not be decoded (stack zeroed)
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      int size;
      TF_RETURN_IF_ERROR(c->GetAttr("image_size", &size));
      ::tensorflow::shape_inference::ShapeHandle contents;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &contents));
      c->set_output(0, c->MakeShape({c->Dim(contents, 0), size, size, c->Dim(contents, 1)}));
      c->set_output(1, contents);
      return absl::OkStatus();
    });

REGISTER_OP("TwoStreamRgbViews")
    .Input("contents: string")  // [N] JPEG bytes of RGB frames
    .Input("windows: int32")    // [N, 4] top, left, height, width of the crop window
    .Input("flips: bool")       // [N] mirror the view
    .Input("keep: bool")        // [N] false: the sample is dropped later, write zeros, decode nothing
    .Attr("image_size: int >= 1")
    .Attr("scale: list(float)")  // per output channel: out = value * scale + shift
    .Attr("shift: list(float)")
    .Attr("bgr: bool = false")  // output channels in B, G, R order
    .Attr("frame_height: int >= 0 = 0")  // protocol frame size; 0: frames as stored
    .Attr("frame_width: int >= 0 = 0")
    .Attr("accurate_dct: bool = false")
    .Output("views: float")     // [N, image_size, image_size, 3]
    .Output("failed: bool")     // [N] frames of kept views that could not be decoded (view zeroed)
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      int size;
      TF_RETURN_IF_ERROR(c->GetAttr("image_size", &size));
      ::tensorflow::shape_inference::ShapeHandle contents;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 1, &contents));
      c->set_output(0, c->MakeShape({c->Dim(contents, 0), size, size, 3}));
      c->set_output(1, contents);
      return absl::OkStatus();
    });

REGISTER_OP("TwoStreamJpegSizes")
    .Input("contents: string")  // JPEG bytes, any shape
    .Output("sizes: int32")     // [..., 2] height, width; 0, 0 where libjpeg rejects the header
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      ::tensorflow::shape_inference::ShapeHandle sizes;
      TF_RETURN_IF_ERROR(c->Concatenate(c->input(0), c->Vector(2), &sizes));
      c->set_output(0, sizes);
      return absl::OkStatus();
    });

struct Tap {
  int lower, upper;
  float lerp;
};

// TensorFlow's half-pixel-centre bilinear taps for one axis (resize_bilinear_op.cc).
void ComputeTaps(int in_size, int out_size, std::vector<Tap>* taps) {
  const float scale = static_cast<float>(in_size) / out_size;
  taps->resize(out_size);
  for (int i = 0; i < out_size; ++i) {
    const float in = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float in_f = std::floor(in);
    (*taps)[i].lower = std::max(static_cast<int>(in_f), 0);
    (*taps)[i].upper = std::min(static_cast<int>(std::ceil(in)), in_size - 1);
    (*taps)[i].lerp = in - in_f;
  }
}

// Interleaves row r of `planes` planes (plane k's row at src + k * plane_stride, `w` bytes) into
// dst[x * planes + k]. This transpose is where the TensorFlow ops spent a per-byte loop; here 16 planes
// at a time go through SSE2 unpacks (a 16x16 byte transpose), the rest 4 at a time, then one at a time.
void InterleaveRow(const uint8_t* src, size_t plane_stride, int planes, int w, uint8_t* dst) {
  int k0 = 0;
#if defined(__SSE2__)
  const int blocks = w / 16;
  for (; k0 + 16 <= planes; k0 += 16) {
    for (int b = 0; b < blocks; ++b) {
      __m128i a[16], t[16], u[16], v[16];
      for (int i = 0; i < 16; ++i)
        a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k0 + i) * plane_stride + b * 16));
      for (int i = 0; i < 8; ++i) {  // t[2i], t[2i+1]: planes 2i, 2i+1 at columns 0-7, 8-15
        t[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        t[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
      }
      for (int g = 0; g < 4; ++g) {  // u[4g + j]: planes 4g..4g+3 at columns 4j..4j+3
        u[4 * g + 0] = _mm_unpacklo_epi16(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm_unpackhi_epi16(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm_unpacklo_epi16(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm_unpackhi_epi16(t[4 * g + 1], t[4 * g + 3]);
      }
      for (int half = 0; half < 2; ++half) {  // v[8 half + c]: planes 8 half..8 half+7 at columns 2c, 2c+1
        for (int j = 0; j < 4; ++j) {
          v[8 * half + 2 * j] = _mm_unpacklo_epi32(u[8 * half + j], u[8 * half + 4 + j]);
          v[8 * half + 2 * j + 1] = _mm_unpackhi_epi32(u[8 * half + j], u[8 * half + 4 + j]);
        }
      }
      for (int c = 0; c < 8; ++c) {
        uint8_t* column = dst + (b * 16 + 2 * c) * planes + k0;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(column), _mm_unpacklo_epi64(v[c], v[8 + c]));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(column + planes), _mm_unpackhi_epi64(v[c], v[8 + c]));
      }
    }
    for (int x = blocks * 16; x < w; ++x)
      for (int k = k0; k < k0 + 16; ++k) dst[x * planes + k] = src[k * plane_stride + x];
  }
  for (; k0 + 4 <= planes; k0 += 4) {
    for (int b = 0; b < blocks; ++b) {
      __m128i a[4];
      for (int i = 0; i < 4; ++i)
        a[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k0 + i) * plane_stride + b * 16));
      const __m128i t0 = _mm_unpacklo_epi8(a[0], a[1]), t1 = _mm_unpackhi_epi8(a[0], a[1]);
      const __m128i t2 = _mm_unpacklo_epi8(a[2], a[3]), t3 = _mm_unpackhi_epi8(a[2], a[3]);
      const __m128i u[4] = {_mm_unpacklo_epi16(t0, t2), _mm_unpackhi_epi16(t0, t2), _mm_unpacklo_epi16(t1, t3),
                            _mm_unpackhi_epi16(t1, t3)};
      for (int j = 0; j < 4; ++j) {
        alignas(16) uint32_t words[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(words), u[j]);
        for (int e = 0; e < 4; ++e) std::memcpy(dst + (b * 16 + 4 * j + e) * planes + k0, &words[e], 4);
      }
    }
    for (int x = blocks * 16; x < w; ++x)
      for (int k = k0; k < k0 + 4; ++k) dst[x * planes + k] = src[k * plane_stride + x];
  }
#endif
  for (; k0 < planes; ++k0)
    for (int x = 0; x < w; ++x) dst[x * planes + k0] = src[k0 * plane_stride + x];
}

// out[k] = lo[k] + (hi[k] - lo[k]) lerp for the `planes` channels of one output pixel. The compiler leaves
// this loop scalar (a byte-to-float conversion per value, most of the kernel's time), so with AVX2 it
// converts and interpolates 8 channels at a time.
inline void HorizontalLerp(const uint8_t* lo, const uint8_t* hi, float lerp, int planes, float* out) {
  int k = 0;
#if defined(__AVX2__)
  const __m256 weight = _mm256_set1_ps(lerp);
  for (; k + 8 <= planes; k += 8) {
    const __m256 a = _mm256_cvtepi32_ps(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(lo + k))));
    const __m256 b = _mm256_cvtepi32_ps(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(hi + k))));
    _mm256_storeu_ps(out + k, _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), weight)));
  }
  for (; k + 4 <= planes; k += 4) {
    int32_t lo_bytes, hi_bytes;
    std::memcpy(&lo_bytes, lo + k, 4);
    std::memcpy(&hi_bytes, hi + k, 4);
    const __m128 a = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(lo_bytes)));
    const __m128 b = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(hi_bytes)));
    _mm_storeu_ps(out + k, _mm_add_ps(a, _mm_mul_ps(_mm_sub_ps(b, a), _mm256_castps256_ps128(weight))));
  }
#endif
  for (; k < planes; ++k) {
    const float a = lo[k], b = hi[k];
    out[k] = a + (b - a) * lerp;
  }
}

// out[i] = (t + (b - t) yl) scale + shift. The batch is far larger than the cache and is not read
// again here, so with AVX the row is written with streaming stores (no read for ownership).
void VerticalRow(const float* t, const float* b, const float* scale, const float* shift, float yl, int len,
                 float* out) {
  int i = 0;
#if defined(__AVX__)
  if ((reinterpret_cast<uintptr_t>(out) & 31) == 0) {
    const __m256 lerp = _mm256_set1_ps(yl);
    for (; i + 8 <= len; i += 8) {
      const __m256 tv = _mm256_loadu_ps(t + i), bv = _mm256_loadu_ps(b + i);
      const __m256 value = _mm256_add_ps(tv, _mm256_mul_ps(_mm256_sub_ps(bv, tv), lerp));
      _mm256_stream_ps(out + i, _mm256_add_ps(_mm256_mul_ps(value, _mm256_loadu_ps(scale + i)),
                                              _mm256_loadu_ps(shift + i)));
    }
  }
#endif
  for (; i < len; ++i) out[i] = (t[i] + (b[i] - t[i]) * yl) * scale[i] + shift[i];
}

// Output rows y = 0..size-1 of a view, each the vertical lerp of two horizontally resized source rows
// (made by `horizontal(source_row, float* row)`), normalised by `scale` and `shift` per row element.
// Consecutive output rows mostly share their source rows, so the two last ones are kept.
template <typename Horizontal>
void ResizeRows(const std::vector<Tap>& ys, int row_len, const float* scale, const float* shift,
                const Horizontal& horizontal, std::vector<float>* top, std::vector<float>* bottom, float* out) {
  int top_row = -1, bottom_row = -1;  // source rows held in `top` and `bottom`
  for (size_t y = 0; y < ys.size(); ++y) {
    const int lo = ys[y].lower, hi = ys[y].upper;
    if (lo != top_row) {
      if (lo == bottom_row) {
        std::swap(*top, *bottom);
        std::swap(top_row, bottom_row);
      } else {
        horizontal(lo, top->data());
        top_row = lo;
      }
    }
    if (hi != bottom_row) {
      if (hi == top_row) {
        *bottom = *top;
      } else {
        horizontal(hi, bottom->data());
      }
      bottom_row = hi;
    }
    VerticalRow(top->data(), bottom->data(), scale, shift, ys[y].lerp, row_len, out + y * row_len);
  }
}

// OpenCV's INTER_LINEAR taps of one axis in fixed point (frame_resize.py): source indices and weights
// scaled by 2048. Columns clamp their weights at the borders; rows only clip the source indices.
struct FixedTap {
  int lower, upper, weight_lower, weight_upper;
};

void ComputeFixedTaps(int in_size, int out_size, bool clamp_weights, std::vector<FixedTap>* taps) {
  const double scale = static_cast<double>(in_size) / out_size;
  taps->resize(out_size);
  for (int i = 0; i < out_size; ++i) {
    const float position = static_cast<float>((i + 0.5) * scale - 0.5);
    int lower = static_cast<int>(std::floor(position));
    float fraction = position - static_cast<float>(lower);
    if (clamp_weights) {
      if (lower < 0) fraction = 0.0f, lower = 0;
      if (lower >= in_size - 1) fraction = 0.0f, lower = in_size - 1;
    }
    FixedTap& tap = (*taps)[i];
    tap.lower = std::min(std::max(lower, 0), in_size - 1);
    tap.upper = std::min(std::max(lower + 1, 0), in_size - 1);
    tap.weight_lower = static_cast<int>(std::nearbyint((1.0f - fraction) * 2048.0f));
    tap.weight_upper = static_cast<int>(std::nearbyint(fraction * 2048.0f));
  }
}

// The window (top, left, height, width) of `source` (src_h x src_w x components) resized to
// frame_h x frame_w as cv2.resize does, written to `target` (height x width x components).
void CvResizeWindow(const uint8_t* source, int src_h, int src_w, int components, int frame_h, int frame_w,
                    int top, int left, int height, int width, uint8_t* target) {
  std::vector<FixedTap> xs, ys;
  ComputeFixedTaps(src_w, frame_w, true, &xs);
  ComputeFixedTaps(src_h, frame_h, false, &ys);
  const int row_len = width * components;
  std::vector<int32_t> upper_row(row_len), lower_row(row_len);
  auto horizontal = [&](int r, int32_t* row) {
    const uint8_t* line = source + static_cast<size_t>(r) * src_w * components;
    for (int x = 0; x < width; ++x) {
      const FixedTap& tap = xs[left + x];
      for (int c = 0; c < components; ++c) {
        row[x * components + c] = line[tap.lower * components + c] * tap.weight_lower +
                                  line[tap.upper * components + c] * tap.weight_upper;
      }
    }
  };
  for (int y = 0; y < height; ++y) {
    const FixedTap& tap = ys[top + y];
    horizontal(tap.lower, upper_row.data());
    horizontal(tap.upper, lower_row.data());
    uint8_t* out = target + static_cast<size_t>(y) * row_len;
    for (int i = 0; i < row_len; ++i) {
      const int value = (((tap.weight_lower * (upper_row[i] >> 4)) >> 16) +
                         ((tap.weight_upper * (lower_row[i] >> 4)) >> 16) + 2) >> 2;
      out[i] = static_cast<uint8_t>(std::min(std::max(value, 0), 255));
    }
  }
}

// How the kernels decode: the protocol frame size (0: as stored) and the IDCT.
struct DecodeOptions {
  int frame_height = 0, frame_width = 0;
  bool accurate_dct = false;
};

// Decodes the window (top, left, height, width) of a JPEG into `target` (height x width x components),
// with the flags tf.io.decode_and_crop_jpeg uses (dct_method per `options`), so the pixels are the same.
// With a protocol frame size the JPEG stored at another size is decoded whole, resized (CvResizeWindow)
// and cropped.
bool DecodeWindow(const tstring& bytes, int components, int top, int left, int height, int width,
                  const DecodeOptions& options, uint8_t* target) {
  ::tensorflow::jpeg::UncompressFlags flags;
  flags.components = components;
  flags.dct_method = options.accurate_dct ? JDCT_ISLOW : JDCT_IFAST;
  if (options.frame_height > 0) {
    int stored_w = 0, stored_h = 0, stored_c = 0;
    if (!::tensorflow::jpeg::GetImageInfo(bytes.data(), bytes.size(), &stored_w, &stored_h, &stored_c)) return false;
    if (stored_w != options.frame_width || stored_h != options.frame_height) {
      if (top < 0 || left < 0 || top + height > options.frame_height || left + width > options.frame_width) {
        return false;
      }
      std::vector<uint8_t> whole;
      int whole_w = 0, whole_h = 0;
      const uint8_t* decoded = ::tensorflow::jpeg::Uncompress(
          bytes.data(), static_cast<int>(bytes.size()), flags, nullptr, [&](int w, int h, int c) -> uint8_t* {
            if (c != components) return nullptr;
            whole_w = w, whole_h = h;
            whole.resize(static_cast<size_t>(w) * h * c);
            return whole.data();
          });
      if (decoded == nullptr) return false;
      CvResizeWindow(whole.data(), whole_h, whole_w, components, options.frame_height, options.frame_width, top,
                     left, height, width, target);
      return true;
    }
  }
  flags.crop = true;
  flags.crop_x = left;
  flags.crop_y = top;
  flags.crop_width = width;
  flags.crop_height = height;
  bool fits = true;
  const uint8_t* decoded = ::tensorflow::jpeg::Uncompress(
      bytes.data(), static_cast<int>(bytes.size()), flags, nullptr,
      [&](int w, int h, int c) -> uint8_t* {
        fits = w == width && h == height && c == components;
        return fits ? target : nullptr;
      });
  return decoded != nullptr && fits;
}

// The horizontal taps of a view, read mirrored when `flip`: output column x samples crop column
// w - 1 - source.
void HorizontalTaps(int w, int size, bool flip, std::vector<Tap>* xs) {
  ComputeTaps(w, size, xs);
  if (flip) {
    for (Tap& tap : *xs) {
      tap.lower = w - 1 - tap.lower;
      tap.upper = w - 1 - tap.upper;
    }
  }
}

struct Window {
  int top, left, height, width;
};

// What both kernels do around their views: checks the windows, flips and keep inputs (1, 2, 3) against
// the N views of `out` (each `view_len` floats), writes zeros for the views not kept, and calls
// make(n, window, flip, view) for the others, stopping at the first error it reports through ctx; a view
// make returns false for (a file it could not decode, flagged by make) is zeroed too.
template <typename Make>
void ForEachView(OpKernelContext* ctx, int64_t count, int64_t view_len, const char* noun, float* out,
                 const Make& make) {
  const Tensor& windows_in = ctx->input(1);
  OP_REQUIRES(ctx, windows_in.dims() == 2 && windows_in.dim_size(0) == count && windows_in.dim_size(1) == 4 &&
                       ctx->input(2).NumElements() == count && ctx->input(3).NumElements() == count,
              absl::InvalidArgumentError(
                  absl::StrCat("windows must be [N, 4] and flips, keep [N] for N ", noun, "s")));
  const auto windows = windows_in.matrix<int32_t>();
  const auto flips = ctx->input(2).flat<bool>();
  const auto keep = ctx->input(3).flat<bool>();
  for (int64_t n = 0; n < count; ++n) {
    float* view = out + n * view_len;
    if (!keep(n)) {
      std::fill(view, view + view_len, 0.0f);
      continue;
    }
    const Window window{windows(n, 0), windows(n, 1), windows(n, 2), windows(n, 3)};
    OP_REQUIRES(ctx, window.height > 0 && window.width > 0,
                absl::InvalidArgumentError(absl::StrCat(noun, " ", n, ": empty crop window ", window.height,
                                                        "x", window.width)));
    const bool made = make(n, window, flips(n), view);
    if (!ctx->status().ok()) return;
    if (!made) std::fill(view, view + view_len, 0.0f);
  }
#if defined(__SSE2__)
  _mm_sfence();  // order the streaming stores before the batch is handed on
#endif
}

absl::Status GetDecodeOptions(OpKernelConstruction* ctx, DecodeOptions* options) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("frame_height", &options->frame_height));
  TF_RETURN_IF_ERROR(ctx->GetAttr("frame_width", &options->frame_width));
  TF_RETURN_IF_ERROR(ctx->GetAttr("accurate_dct", &options->accurate_dct));
  if ((options->frame_height > 0) != (options->frame_width > 0)) {
    return absl::InvalidArgumentError("frame_height and frame_width must both be 0 or both positive");
  }
  return absl::OkStatus();
}

class FlowStacksOp : public OpKernel {
 public:
  explicit FlowStacksOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("image_size", &size_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("zero", &zero_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, GetDecodeOptions(ctx, &options_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& contents = ctx->input(0);
    const int64_t count = contents.dim_size(0);
    const auto data = contents.matrix<tstring>();
    const int planes = static_cast<int>(contents.dim_size(1)), size = size_, row_len = size_ * planes;
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({count, size, size, planes}), &output));
    Tensor* failed_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({count, planes}), &failed_out));
    auto failed = failed_out->matrix<bool>();
    failed.setConstant(false);

    // Per output channel, for plain and for mirrored stacks: q -> (q - zero) * scale like
    // augment.flow_view, and x -> 255 - x on the x planes when mirrored.
    std::vector<float> scale[2], shift[2];
    for (int flip = 0; flip < 2; ++flip) {
      scale[flip].resize(row_len);
      shift[flip].resize(row_len);
      for (int i = 0; i < row_len; ++i) {
        const bool negate = flip && (i % planes) % 2 == 0;
        scale[flip][i] = (negate ? -1.0f : 1.0f) * scale_;
        shift[flip][i] = ((negate ? 255.0f : 0.0f) - zero_) * scale_;
      }
    }
    std::vector<uint8_t> pixels, interleaved;
    std::vector<float> top(row_len), bottom(row_len);
    std::vector<Tap> xs, ys;
    auto make = [&](int64_t n, const Window& window, bool flip, float* stack) -> bool {
      const int h = window.height, w = window.width;
      const size_t plane_size = static_cast<size_t>(h) * w;
      pixels.resize(plane_size * planes);
      bool decoded = true;
      for (int k = 0; k < planes; ++k) {  // every plane, so that each bad one is named
        failed(n, k) = !DecodeWindow(data(n, k), 1, window.top, window.left, h, w, options_,
                                    pixels.data() + k * plane_size);
        decoded = decoded && !failed(n, k);
      }
      if (!decoded) return false;
      HorizontalTaps(w, size, flip, &xs);
      ComputeTaps(h, size, &ys);
      interleaved.resize(static_cast<size_t>(w) * planes);
      auto horizontal = [&](int r, float* row) {  // source row r -> interleaved, horizontally resized
        InterleaveRow(pixels.data() + static_cast<size_t>(r) * w, plane_size, planes, w, interleaved.data());
        for (int x = 0; x < size; ++x) {
          HorizontalLerp(interleaved.data() + static_cast<size_t>(xs[x].lower) * planes,
                         interleaved.data() + static_cast<size_t>(xs[x].upper) * planes, xs[x].lerp, planes,
                         row + x * planes);
        }
      };
      ResizeRows(ys, row_len, scale[flip].data(), shift[flip].data(), horizontal, &top, &bottom, stack);
      return true;
    };
    ForEachView(ctx, count, static_cast<int64_t>(size) * row_len, "stack", output->flat<float>().data(), make);
  }

 private:
  int size_;
  float zero_, scale_;
  DecodeOptions options_;
};

// One RGB view per sample: decode the crop window (3 components), mirror, resize, normalise per channel
// (out = v * scale[c] + shift[c], after reversing the channel order to BGR when `bgr`), as
// augment.rgb_view makes it for the named normalisations.
class RgbViewsOp : public OpKernel {
 public:
  explicit RgbViewsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("image_size", &size_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shift", &shift_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bgr", &bgr_));
    OP_REQUIRES_OK(ctx, GetDecodeOptions(ctx, &options_));
    OP_REQUIRES(ctx, scale_.size() == 3 && shift_.size() == 3,
                absl::InvalidArgumentError("scale and shift must have 3 values (R, G, B)"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& contents = ctx->input(0);
    const int64_t count = contents.NumElements();
    const auto data = contents.flat<tstring>();
    const int size = size_, row_len = size_ * 3;
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({count, size, size, 3}), &output));
    Tensor* failed_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({count}), &failed_out));
    auto failed = failed_out->flat<bool>();
    failed.setConstant(false);

    std::vector<float> scale(row_len), shift(row_len);
    for (int i = 0; i < row_len; ++i) {
      scale[i] = scale_[i % 3];
      shift[i] = shift_[i % 3];
    }
    // A 4th float per row: the horizontal pass writes 4 values per pixel, the 4th overwritten by the next.
    std::vector<float> top(row_len + 1), bottom(row_len + 1);
    std::vector<uint8_t> pixels;
    std::vector<Tap> xs, ys;
    const bool bgr = bgr_;
    auto make = [&](int64_t n, const Window& window, bool flip, float* view) -> bool {
      const int h = window.height, w = window.width;
      pixels.resize(static_cast<size_t>(h) * w * 3 + 1);  // + 1: the 4-byte loads of the last pixel
      failed(n) = !DecodeWindow(data(n), 3, window.top, window.left, h, w, options_, pixels.data());
      if (failed(n)) return false;
      HorizontalTaps(w, size, flip, &xs);
      ComputeTaps(h, size, &ys);
      auto horizontal = [&](int r, float* row) {
        const uint8_t* source = pixels.data() + static_cast<size_t>(r) * w * 3;
        for (int x = 0; x < size; ++x) {
          RgbLerp(source + xs[x].lower * 3, source + xs[x].upper * 3, xs[x].lerp, bgr, row + x * 3);
        }
      };
      ResizeRows(ys, row_len, scale.data(), shift.data(), horizontal, &top, &bottom, view);
      return true;
    };
    ForEachView(ctx, count, static_cast<int64_t>(size) * row_len, "frame", output->flat<float>().data(), make);
  }

 private:
  // out[0..2] = lo + (hi - lo) lerp for one RGB pixel (BGR if `bgr`); with SSE4.1 one 4-wide step that
  // also writes out[3], which the caller leaves room for.
  static void RgbLerp(const uint8_t* lo, const uint8_t* hi, float lerp, bool bgr, float* out) {
#if defined(__SSE4_1__)
    int32_t lo_bytes, hi_bytes;
    std::memcpy(&lo_bytes, lo, 4);
    std::memcpy(&hi_bytes, hi, 4);
    const __m128 a = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(lo_bytes)));
    const __m128 b = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(hi_bytes)));
    __m128 value = _mm_add_ps(a, _mm_mul_ps(_mm_sub_ps(b, a), _mm_set1_ps(lerp)));
    if (bgr) value = _mm_shuffle_ps(value, value, _MM_SHUFFLE(3, 0, 1, 2));
    _mm_storeu_ps(out, value);
#else
    for (int c = 0; c < 3; ++c) {
      const int source = bgr ? 2 - c : c;
      const float a = lo[source], b = hi[source];
      out[c] = a + (b - a) * lerp;
    }
#endif
  }

  int size_;
  std::vector<float> scale_, shift_;
  bool bgr_;
  DecodeOptions options_;
};

// Frame sizes from the JPEG headers: libjpeg's header parser, 0x0 where it rejects the file.
class JpegSizesOp : public OpKernel {
 public:
  explicit JpegSizesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& contents = ctx->input(0);
    TensorShape shape = contents.shape();
    shape.AddDim(2);
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &output));
    const auto data = contents.flat<tstring>();
    auto sizes = output->flat_inner_dims<int32_t>();
    for (int64_t n = 0; n < data.size(); ++n) {
      int width = 0, height = 0, components = 0;
      const bool ok = ::tensorflow::jpeg::GetImageInfo(data(n).data(), static_cast<int>(data(n).size()), &width,
                                                       &height, &components);
      sizes(n, 0) = ok ? height : 0;
      sizes(n, 1) = ok ? width : 0;
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("TwoStreamJpegSizes").Device(::tensorflow::DEVICE_CPU), JpegSizesOp);
REGISTER_KERNEL_BUILDER(Name("TwoStreamFlowStacks").Device(::tensorflow::DEVICE_CPU), FlowStacksOp);
REGISTER_KERNEL_BUILDER(Name("TwoStreamRgbViews").Device(::tensorflow::DEVICE_CPU), RgbViewsOp);

}  // namespace
}  // namespace two_stream_tf
