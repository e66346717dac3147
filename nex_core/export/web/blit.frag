// Copies the (premultiplied, over black) accumulation target to the canvas, opaque; an accumulation in
// linear light (uLinear) is encoded to sRGB here.
precision highp float;
uniform sampler2D uAccum;
uniform bool uLinear;
out vec4 fragColor;

vec3 linearToSrgb(vec3 c) {
  return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c));
}

void main() {
  vec3 c = clamp(texelFetch(uAccum, ivec2(gl_FragCoord.xy), 0).rgb, 0.0, 1.0);
  fragColor = vec4(uLinear ? linearToSrgb(c) : c, 1.0);
}
