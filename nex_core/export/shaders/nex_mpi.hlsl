// nex_mpi.hlsl — engine-side shader function for a NeX MPI exported with `nex export RUN --gltf out.glb`
// (glTF extension EXT_nex_mpi; see docs/engines.md). HLSL (Shader Model 4+), for Unity (a Custom
// Function node in Shader Graph, or a hand-written shader) and Unreal (a Custom material node with this
// file under "Include File Paths"). The same computation as nex_mpi.glsl (tested in three.js against
// nex_core/io/baked/reference_render.py); this file is compiled in the tests with glslang's HLSL front
// end, but no engine has run it here.
//
// One material per plane (the plane's quad from the .glb), drawn back to front with standard alpha
// blending (SrcAlpha, OneMinusSrcAlpha), no depth writes, both faces ("Transparent", "Unlit").
//
// Inputs (values from the EXT_nex_mpi block of the node named NeX_reference, see docs/engines.md):
//   uv            the quad's glTF texture coordinates, (0, 0) = the plane texture's top-left corner.
//                 Importers that flip V (Unity's: v' = 1 - v) hand you v'; #define NEX_FLIP_V to undo it
//                 in every texture read (texture rows are then stored bottom-up as well).
//   cameraRig     the camera centre in the NeX_reference node's local frame (glTF's axes: x right, y up,
//                 z backward): mul(worldToRig, float4(cameraWorld, 1)).xyz. If the importer mirrored the
//                 scene into a left-handed engine, multiply by rigAxisSign to undo it (see the guide).
//   depth, depthFirst   depths[i] and depths[layer * sublayers] (layer = i / sublayers)
//   intrinsics    (fx, fy, cx + offset, cy + offset) of referenceCamera;  mpiSize: (mpiWidth, mpiHeight)
//   lutRange      (vx[0], vx[1], vy[0], vy[1]);  lutSize: (lutWidth, lutHeight)
//   planeTex      the plane's base-colour texture (only its alpha is read)
//   k0Tex         k0Textures[layer];  coeffN: coefficientTextures[layer][N];  lutN: basis.lutTextures[N]
//   s             a bilinear, clamp-to-edge sampler, no mipmaps. The k0, coefficient and LUT textures are
//                 data: import them as linear (no sRGB decoding).
// Output: straight (not premultiplied) RGBA in display (sRGB-encoded) values; in a linear-light pipeline
// pass the colour through nex_srgb_to_linear(): blending then happens in linear light, exactly as an MPI
// with EXT_nex_mpi compositing "linear" was trained (one with "srgb" differs a little where planes are
// semi-transparent; blend display values for it).

#ifndef NEX_MPI_HLSL
#define NEX_MPI_HLSL

#ifndef NEX_BASIS
#define NEX_BASIS 8
#endif
#if NEX_BASIS > 8
#error "nex_mpi.hlsl takes up to 8 basis functions (nex_mpi.glsl takes 12)"
#endif

float3 nex_signed(float3 x) { return x * 2.0 - 1.0; }

float2 nex_tex(float2 uv) {
#ifdef NEX_FLIP_V
    return float2(uv.x, 1.0 - uv.y);
#else
    return uv;
#endif
}

float3 nex_srgb_to_linear(float3 c) {
    return lerp(c / 12.92, pow((c + 0.055) / 1.055, 2.4), step(0.04045, c));
}

// The camera centre in the MPI's OpenCV reference frame (x right, y down, z forward).
float3 nex_camera_cv(float3 cameraRig, float3 rigAxisSign) {
    float3 c = cameraRig * rigAxisSign;
    return float3(c.x, -c.y, -c.z);
}

float4 nex_colour(float2 uv, float3 cameraRig, float3 rigAxisSign, float depth, float depthFirst,
                  float4 intrinsics, float2 mpiSize, float4 lutRange, float2 lutSize, bool viewDependent,
                  Texture2D planeTex, Texture2D k0Tex,
                  Texture2D coeff0, Texture2D coeff1, Texture2D coeff2, Texture2D coeff3,
                  Texture2D coeff4, Texture2D coeff5, Texture2D coeff6, Texture2D coeff7,
                  Texture2D lut0, Texture2D lut1, Texture2D lut2, SamplerState s)
{
    float2 uvTop = nex_tex(uv);                   // top-left origin, whatever the importer did
    float2 pix = uvTop * mpiSize;                 // MPI pixel coordinates; texel k's centre at k + 0.5
    float3 p = float3((pix - intrinsics.zw) / intrinsics.xy * depth, depth);  // the plane point, OpenCV
    float3 cam = nex_camera_cv(cameraRig, rigAxisSign);
    // Zero outside the MPI (NeX's bilinear reads pad with zeros; clamp-to-edge would repeat the border).
    float2 px = pix - 0.5;
    float2 e = saturate(px + 1.0) * saturate(mpiSize - px);
    float edge = e.x * e.y;
    float a = planeTex.SampleLevel(s, uv, 0).a * edge;
    float3 c = k0Tex.SampleLevel(s, uv, 0).rgb * edge;
    if (viewDependent) {
        float3 d = p - cam;                       // the view ray
        float3 p1 = cam + d * ((depthFirst - cam.z) / d.z);  // where it meets the layer's first plane
        float2 q = intrinsics.xy * p1.xy / depthFirst + intrinsics.zw;
        q = nex_tex(clamp(q, 0.5, mpiSize - 0.5) / mpiSize);
        float3 v = normalize(d);
        float2 t = (clamp(v.xy, lutRange.xz, lutRange.yw) - lutRange.xz) / (lutRange.yw - lutRange.xz);
        t = nex_tex((t * (lutSize - 1.0) + 0.5) / lutSize);
        float3 h0 = nex_signed(lut0.SampleLevel(s, t, 0).rgb);
        float3 h1 = nex_signed(lut1.SampleLevel(s, t, 0).rgb);
        float3 h2 = nex_signed(lut2.SampleLevel(s, t, 0).rgb);
        float3 spec = nex_signed(coeff0.SampleLevel(s, q, 0).rgb) * h0.x;
#if NEX_BASIS > 1
        spec += nex_signed(coeff1.SampleLevel(s, q, 0).rgb) * h0.y;
#endif
#if NEX_BASIS > 2
        spec += nex_signed(coeff2.SampleLevel(s, q, 0).rgb) * h0.z;
#endif
#if NEX_BASIS > 3
        spec += nex_signed(coeff3.SampleLevel(s, q, 0).rgb) * h1.x;
#endif
#if NEX_BASIS > 4
        spec += nex_signed(coeff4.SampleLevel(s, q, 0).rgb) * h1.y;
#endif
#if NEX_BASIS > 5
        spec += nex_signed(coeff5.SampleLevel(s, q, 0).rgb) * h1.z;
#endif
#if NEX_BASIS > 6
        spec += nex_signed(coeff6.SampleLevel(s, q, 0).rgb) * h2.x;
#endif
#if NEX_BASIS > 7
        spec += nex_signed(coeff7.SampleLevel(s, q, 0).rgb) * h2.y;
#endif
        c += spec;
    }
    return float4(saturate(c), a);
}

// Unity Shader Graph Custom Function node ("File" mode, function name NexColour): the same with the
// _float suffix and out parameter Shader Graph expects. Pass UnityTexture2D inputs' .tex members and a
// clamp sampler (see docs/engines.md).
void NexColour_float(float2 uv, float3 cameraRig, float3 rigAxisSign, float depth, float depthFirst,
                     float4 intrinsics, float2 mpiSize, float4 lutRange, float2 lutSize, float viewDependent,
                     Texture2D planeTex, Texture2D k0Tex,
                     Texture2D coeff0, Texture2D coeff1, Texture2D coeff2, Texture2D coeff3,
                     Texture2D coeff4, Texture2D coeff5, Texture2D coeff6, Texture2D coeff7,
                     Texture2D lut0, Texture2D lut1, Texture2D lut2, SamplerState s,
                     out float3 colour, out float alpha)
{
    float4 rgba = nex_colour(uv, cameraRig, rigAxisSign, depth, depthFirst, intrinsics, mpiSize, lutRange,
                             lutSize, viewDependent > 0.5, planeTex, k0Tex, coeff0, coeff1, coeff2, coeff3,
                             coeff4, coeff5, coeff6, coeff7, lut0, lut1, lut2, s);
    colour = rgba.rgb;
    alpha = rgba.a;
}

#ifdef NEX_SELFTEST
// A complete pixel shader around nex_colour, for compile checks (tests/test_web_gltf.py).
cbuffer NexPlane : register(b0) {
    float4x4 nexWorldToRig;
    float3 nexCameraWorld;
    float nexDepth;
    float3 nexRigAxisSign;
    float nexDepthFirst;
    float4 nexIntrinsics;
    float4 nexLutRange;
    float2 nexMpiSize;
    float2 nexLutSize;
    float nexViewDependent;
};
Texture2D nexPlane : register(t0);
Texture2D nexK0 : register(t1);
Texture2D nexCoeff0 : register(t2);
Texture2D nexCoeff1 : register(t3);
Texture2D nexCoeff2 : register(t4);
Texture2D nexCoeff3 : register(t5);
Texture2D nexCoeff4 : register(t6);
Texture2D nexCoeff5 : register(t7);
Texture2D nexCoeff6 : register(t8);
Texture2D nexCoeff7 : register(t9);
Texture2D nexLut0 : register(t10);
Texture2D nexLut1 : register(t11);
Texture2D nexLut2 : register(t12);
SamplerState nexClampLinear : register(s0);

float4 main(float4 position : SV_Position, float2 uv : TEXCOORD0) : SV_Target {
    float3 cameraRig = mul(nexWorldToRig, float4(nexCameraWorld, 1.0)).xyz;
    float4 rgba = nex_colour(uv, cameraRig, nexRigAxisSign, nexDepth, nexDepthFirst, nexIntrinsics, nexMpiSize,
                             nexLutRange, nexLutSize, nexViewDependent > 0.5, nexPlane, nexK0,
                             nexCoeff0, nexCoeff1, nexCoeff2, nexCoeff3, nexCoeff4, nexCoeff5, nexCoeff6,
                             nexCoeff7, nexLut0, nexLut1, nexLut2, nexClampLinear);
    return float4(nex_srgb_to_linear(rgba.rgb), rgba.a);
}
#endif

#endif  // NEX_MPI_HLSL
