// NeX baked-MPI viewer: one quad per MPI plane, placed at its depth in the reference camera frame.
// viewer.js prepends "#version 300 es" and the #defines (N_BASIS, N_LUT, ...).
precision highp float;

layout(location = 0) in vec2 aCorner;  // (0, 0) = the MPI's top-left corner .. (1, 1) = bottom-right

uniform mat4 uRefToClip;  // reference frame (OpenCV axes: x right, y down, z forward) -> clip space
uniform vec4 uIntr;       // fx, fy, cx + offset, cy + offset: reference pixel -> MPI texel coordinates
uniform vec2 uMpiSize;    // MPI width and height in texels
uniform float uDepth;     // this plane: z = uDepth in the reference frame

out vec3 vP;              // the point on the plane, reference frame

void main() {
  vec2 uv = aCorner * uMpiSize;  // MPI pixel coordinates (texel k's centre at k + 0.5)
  vec3 p = vec3((uv - uIntr.zw) / uIntr.xy * uDepth, uDepth);
  vP = p;
  gl_Position = uRefToClip * vec4(p, 1.0);
}
