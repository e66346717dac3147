// nex_mpi.glsl — engine-side shader for a NeX MPI exported with `nex export RUN --gltf out.glb`
// (glTF extension EXT_nex_mpi; see docs/engines.md). GLSL ES 3.00 / GLSL 3.30, one file for both stages:
// compile it with "#define NEX_VERTEX" for the vertex stage and "#define NEX_FRAGMENT" for the fragment
// stage. One material per plane (the plane's quad mesh from the .glb), drawn back to front with standard
// alpha blending (SRC_ALPHA, ONE_MINUS_SRC_ALPHA), no depth writes, both faces.
//
// It computes, like nex_core/io/baked/reference_render.py (the reference): the plane point from the
// quad's texture coordinates; alpha (the plane's base-colour texture's alpha) and k0 there, zero outside
// the plane; the layer's coefficients where the view ray meets the layer's first plane (clamped to the
// edge); the basis from the LUT at the ray's unit direction in the reference camera's frame (clamped to
// the LUT's range); colour = clamp(k0 + sum_n k_n H_n, 0, 1) in display (sRGB-encoded) values.
//
// three.js (tested): ShaderMaterial({ glslVersion: THREE.GLSL3, vertexShader: "#define NEX_VERTEX\n" + src,
//   fragmentShader: "#define NEX_FRAGMENT\n" + src, uniforms, transparent: true,
//   depthWrite: false, side: THREE.DoubleSide }) — three.js declares modelMatrix, viewMatrix,
//   projectionMatrix, cameraPosition, position and uv (with GLSL3 it declares no fragment output:
//   this file declares nexFragColor; #define NEX_OUT to write another). Textures of EXT_nex_mpi are data: leave their
//   colorSpace at NoColorSpace; the plane texture may be sRGB (only its alpha is read).
// Other hosts: #define NEX_HOST_DECLARATIONS to get those declarations from this file, or rename them
// (Godot's shading language: MODEL_MATRIX, VIEW_MATRIX, PROJECTION_MATRIX, CAMERA_POSITION_WORLD, VERTEX,
// UV; see docs/engines.md — the body of nex_colour() ports as it is).
//
// Uniforms (per plane unless noted; values from the EXT_nex_mpi block of the node named NeX_reference):
//   nexWorldToRig    inverse of that node's world matrix (all planes)
//   nexDepth         depths[i] of this plane;  nexDepthFirst: depths[layer * sublayers], layer = i / sublayers
//   nexIntrinsics    (fx, fy, cx + offset, cy + offset) of referenceCamera;  nexMpiSize: (mpiWidth, mpiHeight)
//   nexLutRange      (vx[0], vx[1], vy[0], vy[1]);  nexLutSize: (lutWidth, lutHeight)
//   nexPlane         the plane's base-colour texture;  nexK0: k0Textures[layer]
//   nexCoeff[n]      coefficientTextures[layer][n];   nexLut[g]: basis.lutTextures[g]
//   nexViewDependent false: k0 only
// All textures bilinear, clamped to the edge, no mipmaps, no sRGB decoding (except nexPlane, see above).
// Output: straight (not premultiplied) colour and alpha. In a linear-light pipeline convert the colour
// with nex_srgb_to_linear() (#define NEX_LINEAR_OUTPUT): blending then happens in linear light, exactly
// as an MPI with EXT_nex_mpi compositing "linear" was trained (one with "srgb" differs slightly where
// planes are semi-transparent; blend display values for it).

#ifndef NEX_BASIS
#define NEX_BASIS 8
#endif
#if NEX_BASIS > 12
#error "nex_mpi.glsl supports up to 12 basis functions"
#endif
#define NEX_LUT ((NEX_BASIS + 2) / 3)

precision highp float;

#ifdef NEX_HOST_DECLARATIONS
uniform mat4 modelMatrix;
uniform mat4 viewMatrix;
uniform mat4 projectionMatrix;
uniform vec3 cameraPosition;
#ifdef NEX_VERTEX
in vec3 position;
in vec2 uv;
#endif
#endif

uniform mat4 nexWorldToRig;
uniform float nexDepth;
uniform float nexDepthFirst;
uniform vec4 nexIntrinsics;
uniform vec2 nexMpiSize;
uniform vec4 nexLutRange;
uniform vec2 nexLutSize;
uniform bool nexViewDependent;
uniform sampler2D nexPlane;
uniform sampler2D nexK0;
uniform sampler2D nexCoeff[NEX_BASIS];
uniform sampler2D nexLut[NEX_LUT];

#ifdef NEX_VERTEX
out vec2 nexUv;        // glTF texture coordinates: (0, 0) = the plane texture's top-left corner
out vec3 nexCamera;    // the camera centre in the reference frame, OpenCV axes

void main() {
  nexUv = uv;
  vec3 c = (nexWorldToRig * vec4(cameraPosition, 1.0)).xyz;  // rig frame: OpenGL camera axes
  nexCamera = vec3(c.x, -c.y, -c.z);
  gl_Position = projectionMatrix * viewMatrix * modelMatrix * vec4(position, 1.0);
}
#endif

#ifdef NEX_FRAGMENT
in vec2 nexUv;
in vec3 nexCamera;
#ifndef NEX_OUT
out vec4 nexFragColor;
#define NEX_OUT nexFragColor
#endif

vec3 nex_srgb_to_linear(vec3 c) {
  return mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(vec3(0.04045), c));
}

#define NEX_SIGNED(x) ((x) * 2.0 - 1.0)

// Straight RGBA of the plane at texture coordinates uv, seen from `camera` (OpenCV reference frame).
vec4 nex_colour(vec2 uv, vec3 camera) {
  vec2 pix = uv * nexMpiSize;                       // MPI pixel coordinates; texel k's centre at k + 0.5
  vec3 p = vec3((pix - nexIntrinsics.zw) / nexIntrinsics.xy * nexDepth, nexDepth);  // the plane point
  // Zero outside the MPI, as NeX's bilinear reads with zero padding (clamp-to-edge sampling otherwise
  // repeats the border texels in the outer half texel).
  vec2 px = pix - 0.5;
  vec2 e = clamp(px + 1.0, 0.0, 1.0) * clamp(nexMpiSize - px, 0.0, 1.0);
  float edge = e.x * e.y;
  float a = texture(nexPlane, uv).a * edge;
  vec3 c = texture(nexK0, uv).rgb * edge;
  if (nexViewDependent) {
    vec3 d = p - camera;                             // the view ray
    vec3 p1 = camera + d * ((nexDepthFirst - camera.z) / d.z);  // where it meets the layer's first plane
    vec2 q = nexIntrinsics.xy * p1.xy / nexDepthFirst + nexIntrinsics.zw;
    q = clamp(q, vec2(0.5), nexMpiSize - 0.5) / nexMpiSize;  // clamped to the edge texels' centres
    vec3 v = normalize(d);
    vec2 t = (clamp(v.xy, nexLutRange.xz, nexLutRange.yw) - nexLutRange.xz) / (nexLutRange.yw - nexLutRange.xz);
    t = (t * (nexLutSize - 1.0) + 0.5) / nexLutSize;  // edge texels' centres on the range's edges
    vec3 h0 = NEX_SIGNED(texture(nexLut[0], t).rgb);
#if NEX_LUT > 1
    vec3 h1 = NEX_SIGNED(texture(nexLut[1], t).rgb);
#endif
#if NEX_LUT > 2
    vec3 h2 = NEX_SIGNED(texture(nexLut[2], t).rgb);
#endif
#if NEX_LUT > 3
    vec3 h3 = NEX_SIGNED(texture(nexLut[3], t).rgb);
#endif
    vec3 s = NEX_SIGNED(texture(nexCoeff[0], q).rgb) * h0.x;
#if NEX_BASIS > 1
    s += NEX_SIGNED(texture(nexCoeff[1], q).rgb) * h0.y;
#endif
#if NEX_BASIS > 2
    s += NEX_SIGNED(texture(nexCoeff[2], q).rgb) * h0.z;
#endif
#if NEX_BASIS > 3
    s += NEX_SIGNED(texture(nexCoeff[3], q).rgb) * h1.x;
#endif
#if NEX_BASIS > 4
    s += NEX_SIGNED(texture(nexCoeff[4], q).rgb) * h1.y;
#endif
#if NEX_BASIS > 5
    s += NEX_SIGNED(texture(nexCoeff[5], q).rgb) * h1.z;
#endif
#if NEX_BASIS > 6
    s += NEX_SIGNED(texture(nexCoeff[6], q).rgb) * h2.x;
#endif
#if NEX_BASIS > 7
    s += NEX_SIGNED(texture(nexCoeff[7], q).rgb) * h2.y;
#endif
#if NEX_BASIS > 8
    s += NEX_SIGNED(texture(nexCoeff[8], q).rgb) * h2.z;
#endif
#if NEX_BASIS > 9
    s += NEX_SIGNED(texture(nexCoeff[9], q).rgb) * h3.x;
#endif
#if NEX_BASIS > 10
    s += NEX_SIGNED(texture(nexCoeff[10], q).rgb) * h3.y;
#endif
#if NEX_BASIS > 11
    s += NEX_SIGNED(texture(nexCoeff[11], q).rgb) * h3.z;
#endif
    c += s;
  }
  return vec4(clamp(c, 0.0, 1.0), a);
}

void main() {
  vec4 rgba = nex_colour(nexUv, nexCamera);
#ifdef NEX_LINEAR_OUTPUT
  rgba.rgb = nex_srgb_to_linear(rgba.rgb);
#endif
  NEX_OUT = rgba;
}
#endif
