// NeX baked-MPI viewer: the colour and alpha of one plane where the view ray meets it, as
// nex_core/io/baked/reference_render.py computes them:
//   alpha and k0 sampled where the ray meets this plane (bilinear, zero outside the MPI: the atlas
//   gutter holds zeros); the layer's coefficients where the ray meets the layer's first plane
//   (coefficient_lookup = layer_first_plane; bilinear, clamped to the edge); the basis from the LUT at
//   the ray's unit direction (vx, vy) in the reference frame, clamped to the LUT's range;
//   colour = clamp(k0 + sum_n k_n H_n, 0, 1), decoded from sRGB to linear light when the MPI composites
//   in linear light (mpi.compositing = "linear"; blit.frag encodes the sum again); output premultiplied,
//   blended back to front with (ONE, ONE_MINUS_SRC_ALPHA) = the over operator.
// viewer.js prepends "#version 300 es" and #defines N_BASIS, N_LUT, ALPHA_EPS, and replaces the line
// "@SPECULAR_SUM@" with the sum over n, unrolled (GLSL ES 3.00 indexes sampler arrays with constants only).
precision highp float;
precision highp sampler2D;

in vec3 vP;

uniform vec3 uOrigin;         // the viewing camera's centre, reference frame
uniform vec4 uIntr;           // fx, fy, cx + offset, cy + offset
uniform vec2 uMpiSize;        // MPI texels
uniform float uDepth;         // this plane's depth
uniform float uDepthFirst;    // depth of this plane's layer's first plane
uniform bool uViewDependent;  // false: k0 only
uniform bool uLinear;         // composite in linear light (mpi.compositing = "linear")

// Each texture is an atlas; rect = (tile interior x, y in texels, 1 / atlas width, 1 / atlas height).
uniform sampler2D uAlpha;
uniform vec4 uAlphaRect;
uniform sampler2D uK0;
uniform vec4 uK0Rect;
uniform sampler2D uCoeff[N_BASIS];
uniform vec4 uCoeffRect[N_BASIS];
uniform sampler2D uLut[N_LUT];
uniform vec4 uLutRect[N_LUT];
uniform vec4 uLutRange;       // vx0, vx1, vy0, vy1
uniform vec2 uLutSize;        // LUT texels (width, height)

out vec4 fragColor;

// Bilinear read at texel-index coordinates p (texel k's centre at k) of a tile.
vec4 tap(sampler2D s, vec4 rect, vec2 p) {
  return texture(s, (rect.xy + p + 0.5) * rect.zw);
}

#define SIGNED(x) ((x) * 2.0 - 1.0)

vec3 srgbToLinear(vec3 c) {
  return mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), c));
}

void main() {
  vec2 p = uIntr.xy * vP.xy / uDepth + uIntr.zw - 0.5;
  p = clamp(p, vec2(-1.0), uMpiSize);  // beyond the 1-texel zero gutter alpha and k0 stay 0
  float a = tap(uAlpha, uAlphaRect, p).r;
  if (a < ALPHA_EPS) discard;
  vec3 c = tap(uK0, uK0Rect, p).rgb;
  if (uViewDependent) {
    vec3 d = vP - uOrigin;  // the view ray, reference frame
    vec3 p1 = uOrigin + d * ((uDepthFirst - uOrigin.z) / d.z);
    vec2 q = clamp(uIntr.xy * p1.xy / uDepthFirst + uIntr.zw - 0.5, vec2(0.0), uMpiSize - 1.0);
    vec3 v = normalize(d);
    vec2 t = (clamp(v.xy, uLutRange.xz, uLutRange.yw) - uLutRange.xz) / (uLutRange.yw - uLutRange.xz)
             * (uLutSize - 1.0);
    vec3 spec = vec3(0.0);
    @SPECULAR_SUM@
    c += spec;
  }
  c = clamp(c, 0.0, 1.0);
  if (uLinear) c = srgbToLinear(c);
  fragColor = vec4(c * a, a);
}
