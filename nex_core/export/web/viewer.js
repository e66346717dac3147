// NeX baked-MPI viewer: plain WebGL2, no dependencies, no network access beyond its own server.
//
// Reads baked/mpi.json (format "nex-baked-mpi" versions 1 and 2, written by `nex bake`) and its PNG atlases, and
// draws one quad per MPI plane, back to front, with the fragment shader mpi.frag (the same colour model
// as nex_core/io/baked/reference_render.py, the reference every real-time renderer is tested against).
//
// URL parameters (in the query string or the #hash; the hash wins):
//   camera=<JSON>  a fixed camera: {"c2w": 4x4 camera-to-world (OpenCV axes: x right, y down, z forward)
//                  in the scene's world frame, rows first, "fx", "fy", "cx", "cy", "width", "height"}
//                  (pixels; pixel (col, row) has its centre at (col + 0.5, row + 0.5)). With
//                  "frame": "reference" the pose is relative to the reference camera instead.
//                  The canvas is then exactly width x height device pixels and the HUD is hidden.
//   once=1         render one frame, then set document.title = "rendered" (or "error: ...").
//   vd=0           start without the view-dependent part (k0 only).
//   bench=N        time N frames with and without the view-dependent part; the result goes to
//                  window.nexBench and document.title becomes "bench done".
//   float=0        composite straight into the 8-bit canvas instead of a half-float target.
//   base=PATH      where mpi.json and the textures are (default "baked/").
//   hud=0          hide the overlay.
//   animate=1      draw frames continuously (otherwise only while the view changes, and 2 s after).

const FORMAT = "nex-baked-mpi";
const VERSIONS = [1, 2];  // version 1 has no mpi.compositing (it composites sRGB values)
const ALPHA_EPS = 1.0 / 4096.0;  // fragments more transparent than this are skipped (<= 1/4096 of error)

const $ = (id) => document.getElementById(id);

function parseParams() {
  const out = new Map();
  for (const src of [location.search.slice(1), location.hash.slice(1)]) {
    for (const [k, v] of new URLSearchParams(src)) out.set(k, v);
  }
  return out;
}

const params = parseParams();
const base = params.get("base") || "baked/";

function fail(message) {
  const el = $("message");
  el.textContent = message;
  el.classList.add("error");
  el.classList.remove("hidden");
  document.title = "error: " + message;
  console.error(message);
}

function status(message) {
  const el = $("message");
  el.textContent = message;
  el.classList.toggle("hidden", !message);
}

async function fetchJSON(url) {
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

// ------------------------------------------------------------------------------------------------
// 4x4 matrices, row-major Float64Arrays (m[4 * row + col])

function mat(rows) {
  const m = new Float64Array(16);
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) m[4 * r + c] = rows[r][c];
  return m;
}

function mul(a, b) {
  const m = new Float64Array(16);
  for (let r = 0; r < 4; r++) {
    for (let c = 0; c < 4; c++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[4 * r + k] * b[4 * k + c];
      m[4 * r + c] = s;
    }
  }
  return m;
}

function invRigid(a) {  // inverse of [R t; 0 1]
  const m = new Float64Array(16);
  for (let r = 0; r < 3; r++) {
    for (let c = 0; c < 3; c++) m[4 * r + c] = a[4 * c + r];
    m[4 * r + 3] = -(a[r] * a[3] + a[4 + r] * a[7] + a[8 + r] * a[11]);
  }
  m[15] = 1;
  return m;
}

const sub3 = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const cross3 = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const norm3 = (a) => { const l = Math.hypot(a[0], a[1], a[2]); return [a[0] / l, a[1] / l, a[2] / l]; };

// OpenCV camera-to-reference pose at `pos` looking at `target` with image-down roughly +y.
function lookAt(pos, target) {
  const z = norm3(sub3(target, pos));
  const x = norm3(cross3([0, 1, 0], z));
  const y = cross3(z, x);
  return mat([[x[0], y[0], z[0], pos[0]], [x[1], y[1], z[1], pos[1]], [x[2], y[2], z[2], pos[2]], [0, 0, 0, 1]]);
}

// OpenCV intrinsics -> clip space (x right, y up in NDC; depth: near plane at -1, infinity at +1).
function projection(cam, near) {
  const { fx, fy, cx, cy, width: w, height: h } = cam;
  return mat([[2 * fx / w, 0, 2 * cx / w - 1, 0], [0, -2 * fy / h, 1 - 2 * cy / h, 0],
              [0, 0, 1, -2 * near], [0, 0, 1, 0]]);
}

// ------------------------------------------------------------------------------------------------
// The manifest

function checkManifest(m) {
  if (!m || m.format !== FORMAT) {
    throw new Error(`mpi.json: format ${JSON.stringify(m && m.format)} is not "${FORMAT}"; this is not a NeX baked MPI (create one with \`nex bake RUN\`)`);
  }
  if (!VERSIONS.includes(m.version)) {
    throw new Error(`mpi.json: baked-MPI version ${m.version} is not supported by this viewer (it reads versions ${VERSIONS.join(", ")}); bake the run again with this nex, or update nex`);
  }
  const compositing = m.version >= 2 ? m.mpi.compositing : "srgb";
  if (compositing !== "srgb" && compositing !== "linear") {
    throw new Error(`mpi.json: compositing ${JSON.stringify(compositing)} is not supported (srgb or linear); update nex`);
  }
  if (m.mpi.coefficient_lookup !== "layer_first_plane") {
    throw new Error(`mpi.json: coefficient_lookup ${m.mpi.coefficient_lookup} is not supported`);
  }
  const need = { alpha: m.mpi.planes, k0: m.mpi.layers, coeff: m.mpi.layers * m.basis.count,
                 basis: Math.ceil(m.basis.count / 3) };
  for (const [kind, count] of Object.entries(need)) {
    if (!m.tiles[kind] || m.tiles[kind].length !== count) throw new Error(`mpi.json: tiles.${kind} should list ${count} tiles`);
  }
  if (m.mpi.depths.length !== m.mpi.planes) throw new Error("mpi.json: depths and planes disagree");
}

function parseCamera(text, refC2W) {
  let cam;
  try { cam = JSON.parse(text); } catch (e) { throw new Error(`camera parameter is not JSON: ${e.message}`); }
  for (const k of ["fx", "fy", "cx", "cy", "width", "height"]) {
    if (!Number.isFinite(cam[k])) throw new Error(`camera parameter: ${k} missing or not a number`);
  }
  if (!Array.isArray(cam.c2w) || cam.c2w.length < 3) throw new Error("camera parameter: c2w must be a 4x4 (or 3x4) matrix");
  const rows = cam.c2w.slice(0, 3).concat([[0, 0, 0, 1]]);
  const c2w = mat(rows);
  // Reference frame -> camera frame.
  const refToCam = cam.frame === "reference" ? invRigid(c2w) : mul(invRigid(c2w), refC2W);
  return { fx: cam.fx, fy: cam.fy, cx: cam.cx, cy: cam.cy, width: Math.round(cam.width),
           height: Math.round(cam.height), refToCam };
}

// ------------------------------------------------------------------------------------------------
// GL set-up

function compile(gl, type, source, name) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`${name}: ${gl.getShaderInfoLog(s)}`);
  return s;
}

function program(gl, vs, fs, name) {
  const p = gl.createProgram();
  gl.attachShader(p, compile(gl, gl.VERTEX_SHADER, vs, name + " (vertex)"));
  gl.attachShader(p, compile(gl, gl.FRAGMENT_SHADER, fs, name + " (fragment)"));
  gl.linkProgram(p);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(`${name}: ${gl.getProgramInfoLog(p)}`);
  const loc = {};
  const n = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < n; i++) {
    const name = gl.getActiveUniform(p, i).name.replace(/\[0\]$/, "");
    loc[name] = gl.getUniformLocation(p, name);
  }
  // Uniforms the compiler removed read as null (which gl.uniform* ignores), not undefined.
  return { p, loc: new Proxy(loc, { get: (o, k) => (k in o ? o[k] : null) }) };
}

function fragmentSource(template, nBasis, nLut) {
  const lines = [];
  for (let g = 0; g < nLut; g++) lines.push(`vec3 h${g} = SIGNED(tap(uLut[${g}], uLutRect[${g}], t).rgb);`);
  for (let n = 0; n < nBasis; n++) {
    lines.push(`spec += SIGNED(tap(uCoeff[${n}], uCoeffRect[${n}], q).rgb) * h${Math.floor(n / 3)}.${"rgb"[n % 3]};`);
  }
  const defines = `#version 300 es\n#define N_BASIS ${nBasis}\n#define N_LUT ${nLut}\n#define ALPHA_EPS ${ALPHA_EPS.toFixed(8)}\n`;
  return defines + template.replace(/^[ \t]*@SPECULAR_SUM@[ \t]*$/m, lines.join("\n"));
}

async function loadTexture(gl, url, spec) {
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const bmp = await createImageBitmap(await res.blob(), { premultiplyAlpha: "none", colorSpaceConversion: "none" });
  if (bmp.width !== spec.width || bmp.height !== spec.height) {
    throw new Error(`${url}: ${bmp.width}x${bmp.height}, mpi.json says ${spec.width}x${spec.height}; bake again`);
  }
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
  const one = spec.channels === 1;
  gl.texStorage2D(gl.TEXTURE_2D, 1, one ? gl.R8 : gl.RGB8, spec.width, spec.height);
  gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, spec.width, spec.height, one ? gl.RED : gl.RGB, gl.UNSIGNED_BYTE, bmp);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  bmp.close();
  // GPUs store RGB8 as RGBA8: count 4 bytes a texel for it.
  return { tex, bytes: spec.width * spec.height * (one ? 1 : 4) };
}

async function loadTextures(gl, manifest, onProgress) {
  const specs = manifest.textures;
  const out = new Array(specs.length);
  let next = 0, done = 0;
  async function worker() {
    while (next < specs.length) {
      const i = next++;
      out[i] = await loadTexture(gl, base + specs[i].file, specs[i]);
      onProgress(++done, specs.length);
    }
  }
  await Promise.all([worker(), worker(), worker()]);  // a few at a time: bounded memory on phones
  return out;
}

// ------------------------------------------------------------------------------------------------
// The renderer

class MPIRenderer {
  constructor(gl, manifest, textures, shaders, useFloat) {
    this.gl = gl;
    this.m = manifest;
    this.textures = textures;
    const nBasis = manifest.basis.count;
    const nLut = Math.ceil(nBasis / 3);
    this.nBasis = nBasis;
    this.nLut = nLut;
    const units = gl.getParameter(gl.MAX_TEXTURE_IMAGE_UNITS);
    if (units < nBasis + nLut + 2) throw new Error(`this GPU has ${units} texture units; the MPI needs ${nBasis + nLut + 2}`);
    this.prog = program(gl, "#version 300 es\n" + shaders.vert, fragmentSource(shaders.frag, nBasis, nLut), "mpi shader");
    this.blit = program(gl, "#version 300 es\nvoid main() { vec2 p = vec2(gl_VertexID & 1, gl_VertexID >> 1) * 4.0 - 1.0; gl_Position = vec4(p, 0.0, 1.0); }",
                        "#version 300 es\n" + shaders.blit, "blit shader");
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([0, 0, 1, 0, 0, 1, 1, 1]), gl.STATIC_DRAW);
    gl.enableVertexAttribArray(0);
    gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0);
    this.emptyVao = gl.createVertexArray();
    // Per-kind tile rectangles (interior x, y, 1 / atlas w, 1 / atlas h).
    const rect = (t) => {
      const spec = manifest.textures[t.texture];
      return [t.x, t.y, 1 / spec.width, 1 / spec.height];
    };
    this.rects = {};
    for (const kind of ["alpha", "k0", "coeff", "basis"]) this.rects[kind] = manifest.tiles[kind].map(rect);
    this.coeffRects = [];
    for (let l = 0; l < manifest.mpi.layers; l++) {
      this.coeffRects.push(new Float32Array(this.rects.coeff.slice(l * nBasis, (l + 1) * nBasis).flat()));
    }
    this.useFloat = useFloat && !!(gl.getExtension("EXT_color_buffer_float") || gl.getExtension("EXT_color_buffer_half_float"));
    this.linear = manifest.version >= 2 && manifest.mpi.compositing === "linear";
    this.linearApproximated = false;
    this.target = null;
    this.textureBytes = textures.reduce((s, t) => s + t.bytes, 0);
    this.bound = [];
  }

  // The accumulation target: fp16 where the GPU renders to it; else, for an MPI composited in linear
  // light, 8-bit sRGB (blending there happens in linear light); else none (straight to the canvas).
  ensureTarget(w, h) {
    const gl = this.gl;
    const format = this.useFloat ? gl.RGBA16F : this.linear ? gl.SRGB8_ALPHA8 : null;
    if (format === null) return null;
    if (this.target && this.target.w === w && this.target.h === h) return this.target;
    if (this.target) { gl.deleteFramebuffer(this.target.fb); gl.deleteTexture(this.target.tex); }
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texStorage2D(gl.TEXTURE_2D, 1, format, w, h);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    const fb = gl.createFramebuffer();
    gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      gl.deleteFramebuffer(fb);
      gl.deleteTexture(tex);
      if (this.useFloat) {
        this.useFloat = false;
        return this.ensureTarget(w, h);
      }
      this.linear = false;  // no target to composite in linear light: the sRGB-values approximation
      this.linearApproximated = true;
      return null;
    }
    this.target = { w, h, fb, tex };
    this.bound = [];
    return this.target;
  }

  bind(unit, texIndex) {
    if (this.bound[unit] === texIndex) return;
    const gl = this.gl;
    gl.activeTexture(gl.TEXTURE0 + unit);
    gl.bindTexture(gl.TEXTURE_2D, this.textures[texIndex].tex);
    this.bound[unit] = texIndex;
  }

  // cam: {fx, fy, cx, cy, width, height, refToCam (row-major rigid 4x4)}; drawn into a w x h viewport.
  render(cam, viewDependent) {
    const gl = this.gl, m = this.m, L = this.prog.loc;
    const w = cam.width, h = cam.height;
    const target = this.ensureTarget(w, h);
    gl.bindFramebuffer(gl.FRAMEBUFFER, target ? target.fb : null);
    gl.viewport(0, 0, w, h);
    gl.disable(gl.DEPTH_TEST);
    gl.disable(gl.CULL_FACE);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    gl.useProgram(this.prog.p);
    gl.bindVertexArray(this.vao);

    const depths = m.mpi.depths;
    const near = depths[0] * 1e-3;
    const refToClip = mul(projection(cam, near), cam.refToCam);
    gl.uniformMatrix4fv(L.uRefToClip, true, new Float32Array(refToClip));
    const camToRef = invRigid(cam.refToCam);
    gl.uniform3f(L.uOrigin, camToRef[3], camToRef[7], camToRef[11]);
    const rc = m.reference_camera, off = m.mpi.offset;
    gl.uniform4f(L.uIntr, rc.fx, rc.fy, rc.cx + off, rc.cy + off);
    gl.uniform2f(L.uMpiSize, m.mpi.width, m.mpi.height);
    gl.uniform1i(L.uViewDependent, viewDependent ? 1 : 0);
    gl.uniform1i(L.uLinear, this.linear ? 1 : 0);
    const lut = m.basis.lut;
    gl.uniform4f(L.uLutRange, lut.vx[0], lut.vx[1], lut.vy[0], lut.vy[1]);
    gl.uniform2f(L.uLutSize, lut.width, lut.height);
    const nB = this.nBasis, nL = this.nLut;
    gl.uniform1i(L.uAlpha, 0);
    gl.uniform1i(L.uK0, 1);
    gl.uniform1iv(L.uCoeff, Array.from({ length: nB }, (_, n) => 2 + n));
    gl.uniform1iv(L.uLut, Array.from({ length: nL }, (_, g) => 2 + nB + g));
    gl.uniform4fv(L.uLutRect, new Float32Array(this.rects.basis.flat()));
    for (let g = 0; g < nL; g++) this.bind(2 + nB + g, m.tiles.basis[g].texture);

    const S = m.mpi.sublayers;
    for (let j = depths.length - 1; j >= 0; j--) {  // back to front
      const layer = Math.floor(j / S);
      gl.uniform1f(L.uDepth, depths[j]);
      gl.uniform1f(L.uDepthFirst, depths[layer * S]);
      this.bind(0, m.tiles.alpha[j].texture);
      gl.uniform4fv(L.uAlphaRect, this.rects.alpha[j]);
      this.bind(1, m.tiles.k0[layer].texture);
      gl.uniform4fv(L.uK0Rect, this.rects.k0[layer]);
      if (viewDependent) {
        for (let n = 0; n < nB; n++) this.bind(2 + n, m.tiles.coeff[layer * nB + n].texture);
        gl.uniform4fv(L.uCoeffRect, this.coeffRects[layer]);
      }
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    }
    gl.disable(gl.BLEND);
    if (target) {
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      gl.viewport(0, 0, w, h);
      gl.useProgram(this.blit.p);
      gl.bindVertexArray(this.emptyVao);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, target.tex);
      this.bound[0] = -1;
      gl.uniform1i(this.blit.loc.uAccum, 0);
      gl.uniform1i(this.blit.loc.uLinear, this.linear ? 1 : 0);
      gl.drawArrays(gl.TRIANGLES, 0, 3);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Interaction

class CameraControl {
  constructor(manifest, config) {
    const d = manifest.mpi.depths;
    const dmin = d[0], dmax = d[d.length - 1];
    this.focus = 1 / (0.25 / dmin + 0.75 / dmax);  // as the spiral video (LLFF's focus depth)
    const span = config.camera_span;
    if (span) {
      this.min = span.min.slice();
      this.max = span.max.slice();
    } else {  // an older bake without the span: a small box around the reference camera
      const r = 0.05 * dmin;
      this.min = [-r, -r, 0];
      this.max = [r, r, 0];
    }
    for (let k = 0; k < 3; k++) {  // the reference camera is always allowed
      this.min[k] = Math.min(this.min[k], 0);
      this.max[k] = Math.max(this.max[k], 0);
    }
    this.extent = Math.max(this.max[0] - this.min[0], this.max[1] - this.min[1], 1e-6 * dmin);
    this.reset();
  }

  reset() { this.pos = [0, 0, 0]; }

  move(dx, dy, dz) {
    const p = [this.pos[0] + dx, this.pos[1] + dy, this.pos[2] + dz];
    for (let k = 0; k < 3; k++) p[k] = Math.min(this.max[k], Math.max(this.min[k], p[k]));
    this.pos = p;
  }

  refToCam() {
    return invRigid(lookAt(this.pos, [0, 0, this.focus]));
  }
}

function attachControls(canvas, control, onChange) {
  const pointers = new Map();
  let pinch = null;
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
    canvas.classList.add("dragging");
  });
  const end = (e) => {
    pointers.delete(e.pointerId);
    pinch = null;
    if (!pointers.size) canvas.classList.remove("dragging");
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId)) return;
    const [x0, y0] = pointers.get(e.pointerId);
    pointers.set(e.pointerId, [e.clientX, e.clientY]);
    const size = Math.max(canvas.clientWidth, canvas.clientHeight);
    if (pointers.size === 1) {
      // Grab the scene: it follows the pointer, the camera moves the other way.
      const k = 1.5 * control.extent / size;
      control.move(-(e.clientX - x0) * k, -(e.clientY - y0) * k, 0);
    } else if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
      if (pinch !== null) control.move(0, 0, (dist - pinch) * control.extent / size);
      pinch = dist;
    }
    onChange();
  });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    control.move(0, 0, -Math.sign(e.deltaY) * 0.05 * control.extent);
    onChange();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => { control.reset(); onChange(); });
}

// ------------------------------------------------------------------------------------------------
// Main

async function main() {
  if (!window.WebGL2RenderingContext) throw new Error("this browser has no WebGL2");
  const manifest = await fetchJSON(base + "mpi.json");
  checkManifest(manifest);
  let config = {};
  try { config = await fetchJSON("config.json"); } catch (e) { /* a static copy may have none */ }
  if (config.title) document.title = config.title;
  const [vert, frag, blit] = await Promise.all(["mpi.vert", "mpi.frag", "blit.frag"].map(async (f) => {
    const res = await fetch(f);
    if (!res.ok) throw new Error(`${f}: HTTP ${res.status}`);
    return res.text();
  }));

  const refC2W = mat(manifest.reference_camera.c2w_opencv);
  const fixed = params.has("camera") ? parseCamera(params.get("camera"), refC2W) : null;
  const once = params.get("once") === "1";
  const bench = parseInt(params.get("bench") || "0", 10);
  const canvas = $("view");
  if (fixed || params.get("hud") === "0") $("hud").classList.add("hidden");
  if (fixed) {
    document.body.classList.add("fixed");
    canvas.width = fixed.width;
    canvas.height = fixed.height;
    canvas.style.width = fixed.width / devicePixelRatio + "px";
    canvas.style.height = fixed.height / devicePixelRatio + "px";
  }
  const gl = canvas.getContext("webgl2", { alpha: false, antialias: false, depth: false, stencil: false,
                                            premultipliedAlpha: false, preserveDrawingBuffer: true,
                                            powerPreference: "high-performance" });
  if (!gl) throw new Error("could not create a WebGL2 context");
  const maxSide = gl.getParameter(gl.MAX_TEXTURE_SIZE);
  for (const t of manifest.textures) {
    if (t.width > maxSide || t.height > maxSide) {
      throw new Error(`${t.file} is ${t.width}x${t.height}; this GPU takes textures up to ${maxSide}: bake with --max-texture ${maxSide >= 4096 ? 4096 : maxSide}`);
    }
  }
  const textures = await loadTextures(gl, manifest, (done, total) => status(`loading textures ${done}/${total}`));
  const renderer = new MPIRenderer(gl, manifest, textures, { vert, frag, blit }, params.get("float") !== "0");
  status("");
  const rc = manifest.reference_camera;
  const vdBox = $("vd");
  vdBox.checked = params.get("vd") !== "0";
  const targetBytes = () => (renderer.target ? renderer.target.w * renderer.target.h * 8 : 0);
  const describe = () => `${manifest.mpi.planes} planes (${manifest.mpi.layers}x${manifest.mpi.sublayers}) of ` +
    `${manifest.mpi.width}x${manifest.mpi.height} · textures ${(renderer.textureBytes / 1048576).toFixed(1)} MiB` +
    (renderer.useFloat ? " · fp16 target" : renderer.target ? " · 8-bit sRGB target" : " · 8-bit target") +
    (renderer.linear ? " · linear-light compositing" :
     renderer.linearApproximated ? " · linear-light MPI approximated in sRGB (no render target)" : "");
  window.nexViewer = { manifest, renderer, textureBytes: renderer.textureBytes };

  if (fixed) {
    renderer.render(fixed, vdBox.checked);
    gl.finish();
    if (once || !bench) {
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      window.nexViewer.float = renderer.useFloat;
      window.nexViewer.linear = renderer.linear;
      document.title = "rendered";
      return;
    }
  }

  // Interactive (or benchmark) view: the reference camera's intrinsics scaled to the canvas.
  const control = new CameraControl(manifest, config);
  let cssW = 0, cssH = 0;
  function resize() {
    if (fixed) return;
    const aspect = rc.width / rc.height;
    cssW = Math.min(window.innerWidth, window.innerHeight * aspect);
    cssH = cssW / aspect;
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    canvas.width = Math.max(1, Math.round(cssW * dpr));
    canvas.height = Math.max(1, Math.round(cssH * dpr));
  }
  resize();
  window.addEventListener("resize", resize);
  const camera = () => {
    if (fixed) return fixed;
    const sx = canvas.width / rc.width, sy = canvas.height / rc.height;
    return { fx: rc.fx * sx, fy: rc.fy * sy, cx: rc.cx * sx, cy: rc.cy * sy, width: canvas.width,
             height: canvas.height, refToCam: control.refToCam() };
  };

  if (bench > 0) {
    const pixel = new Uint8Array(4);
    const run = (vd) => {
      const r = 0.5 * control.extent;
      for (let i = 0; i < 3; i++) renderer.render(camera(), vd);
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
      const t0 = performance.now();
      for (let i = 0; i < bench; i++) {
        const a = (2 * Math.PI * i) / bench;
        control.reset();
        control.move(r * Math.cos(a), r * Math.sin(a), 0);
        renderer.render(camera(), vd);
      }
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
      const ms = (performance.now() - t0) / bench;
      return { ms, fps: 1000 / ms };
    };
    const withVD = run(true), without = run(false);
    window.nexBench = { frames: bench, width: canvas.width, height: canvas.height,
                        fps_view_dependent: withVD.fps, ms_view_dependent: withVD.ms,
                        fps_k0_only: without.fps, ms_k0_only: without.ms,
                        texture_bytes: renderer.textureBytes, target_bytes: targetBytes(),
                        float_target: renderer.useFloat, planes: manifest.mpi.planes,
                        mpi: [manifest.mpi.width, manifest.mpi.height],
                        renderer: (() => { const d = gl.getExtension("WEBGL_debug_renderer_info");
                                           return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })() };
    document.title = "bench done";
    return;
  }

  // Frames are drawn while something changes and for two seconds after (the FPS counter measures those);
  // an idle viewer draws nothing. animate=1 draws continuously.
  const animate = params.get("animate") === "1";
  const times = [];
  let running = false, activeUntil = 0, last = 0, shown = 0;
  function frame(now) {
    renderer.render(camera(), vdBox.checked);
    if (last) times.push(now - last);
    last = now;
    if (times.length > 60) times.shift();
    if (now - shown > 500 && times.length > 2) {
      const avg = times.reduce((a, b) => a + b, 0) / times.length;
      $("fps").textContent = `${(1000 / avg).toFixed(1)} fps`;
      shown = now;
    }
    $("stats").textContent = `· ${canvas.width}x${canvas.height} · ${describe()}`;
    if (animate || now < activeUntil) {
      requestAnimationFrame(frame);
    } else {
      running = false;
      last = 0;
    }
  }
  function kick() {
    activeUntil = performance.now() + 2000;
    if (!running) {
      running = true;
      requestAnimationFrame(frame);
    }
  }
  attachControls(canvas, control, kick);
  const reset = () => { control.reset(); kick(); };
  $("reset").addEventListener("click", reset);
  vdBox.addEventListener("change", kick);
  window.addEventListener("resize", kick);
  window.addEventListener("keydown", (e) => {
    if (e.key === "v" || e.key === "V") { vdBox.checked = !vdBox.checked; kick(); }
    if (e.key === "r" || e.key === "R") reset();
  });
  kick();
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
