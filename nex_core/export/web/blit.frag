// Copies the (premultiplied, over black) accumulation target to the canvas, opaque.
precision highp float;
uniform sampler2D uAccum;
out vec4 fragColor;
void main() {
  vec4 c = texelFetch(uAccum, ivec2(gl_FragCoord.xy), 0);
  fragColor = vec4(clamp(c.rgb, 0.0, 1.0), 1.0);
}
