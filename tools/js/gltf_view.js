// Renders a NeX .glb with three.js (from tools/js/node_modules, served locally) for the tests.
// ?glb=URL&width=W&height=H            mode "core": the file as any glTF viewer shows it, through its camera
// &mode=ext&camera=<JSON>              mode "ext": every plane drawn with nex_core/export/shaders/nex_mpi.glsl
//                                      from EXT_nex_mpi, at the camera given as in the web viewer
//                                      ({"c2w": OpenCV camera-to-world in the scene's world frame, fx, fy,
//                                      cx, cy, width, height})
// &vd=0                                (ext) k0 only
// &linear=1                            render into a half-float target in linear light and encode it to
//                                      sRGB in a final pass, as an engine with a linear HDR pipeline does
//                                      (in "ext" mode the shader is compiled with NEX_LINEAR_OUTPUT)
// Sets document.title to "rendered" or "error: ...".
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";

const q = new URLSearchParams(location.search.slice(1) + "&" + location.hash.slice(1));

// The scene's (Z-up) world -> glTF's Y-up, as the exporter's root node NeX_MPI applies it.
const ZUP_TO_YUP = new THREE.Matrix4().set(1, 0, 0, 0, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 0, 1);
const CV_TO_GL = new THREE.Matrix4().makeScale(1, -1, -1);

function exactCamera(cam, near, far) {
  const c2w = new THREE.Matrix4();
  const m = cam.c2w;
  c2w.set(...m[0], ...m[1], ...m[2], 0, 0, 0, 1);
  const camera = new THREE.PerspectiveCamera();
  camera.matrixAutoUpdate = false;
  camera.matrix.copy(ZUP_TO_YUP).multiply(c2w).multiply(CV_TO_GL);  // OpenGL camera axes, glTF world
  camera.updateMatrixWorld(true);
  const { fx, fy, cx, cy, width: w, height: h } = cam;
  // OpenCV intrinsics for a camera looking down -Z (OpenGL camera axes).
  camera.projectionMatrix.set(
    2 * fx / w, 0, -(2 * cx / w - 1), 0,
    0, 2 * fy / h, -(1 - 2 * cy / h), 0,
    0, 0, -(far + near) / (far - near), -2 * far * near / (far - near),
    0, 0, -1, 0);
  camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
  return camera;
}

async function useExtension(gltf, shaderSource, viewDependent, linearOutput) {
  const parser = gltf.parser;
  const nodes = parser.json.nodes;
  const rigIndex = nodes.findIndex((n) => n.extensions && n.extensions.EXT_nex_mpi);
  if (rigIndex < 0) throw new Error("no node carries EXT_nex_mpi");
  const ext = nodes[rigIndex].extensions.EXT_nex_mpi;
  const byNode = new Map();
  gltf.scene.traverse((o) => {
    const a = parser.associations.get(o);
    if (a && a.nodes !== undefined) byNode.set(a.nodes, o);
  });
  const rig = byNode.get(rigIndex);
  const worldToRig = rig.matrixWorld.clone().invert();
  const tex = (i) => parser.getDependency("texture", i);
  const lut = await Promise.all(ext.basis.lutTextures.map(tex));
  const n = ext.basis.count;
  const rc = ext.referenceCamera;
  const D = ext.depths.length;
  for (let i = 0; i < D; i++) {
    const layer = Math.floor(i / ext.sublayers);
    const mesh = byNode.get(ext.planes[i]);
    const [k0, ...coeff] = await Promise.all([tex(ext.k0Textures[layer]), ...ext.coefficientTextures[layer].map(tex)]);
    const defines = "#define NEX_BASIS " + n + "\n" + (linearOutput ? "#define NEX_LINEAR_OUTPUT\n" : "");
    const material = new THREE.ShaderMaterial({
      glslVersion: THREE.GLSL3,
      vertexShader: "#define NEX_VERTEX\n" + defines + shaderSource,
      fragmentShader: "#define NEX_FRAGMENT\n" + defines + shaderSource,
      uniforms: {
        nexWorldToRig: { value: worldToRig },
        nexDepth: { value: ext.depths[i] },
        nexDepthFirst: { value: ext.depths[layer * ext.sublayers] },
        nexIntrinsics: { value: new THREE.Vector4(rc.fx, rc.fy, rc.cx + ext.offset, rc.cy + ext.offset) },
        nexMpiSize: { value: new THREE.Vector2(ext.mpiWidth, ext.mpiHeight) },
        nexLutRange: { value: new THREE.Vector4(ext.basis.vx[0], ext.basis.vx[1], ext.basis.vy[0], ext.basis.vy[1]) },
        nexLutSize: { value: new THREE.Vector2(ext.basis.lutWidth, ext.basis.lutHeight) },
        nexViewDependent: { value: viewDependent },
        nexPlane: { value: mesh.material.map },
        nexK0: { value: k0 },
        nexCoeff: { value: coeff },
        nexLut: { value: lut },
      },
      transparent: true, depthWrite: false, depthTest: false, side: THREE.DoubleSide,
    });
    mesh.material = material;
    mesh.renderOrder = D - i;  // back to front
    mesh.frustumCulled = false;
  }
}

try {
  const glb = q.get("glb") || "/model.glb";
  const mode = q.get("mode") || "core";
  const gltf = await new GLTFLoader().loadAsync(glb);
  const scene = gltf.scene;
  scene.updateMatrixWorld(true);
  let camera, w, h;
  if (mode === "core") {
    if (!gltf.cameras.length) throw new Error("the file has no camera");
    camera = gltf.cameras[0];
    w = parseInt(q.get("width"), 10);
    h = parseInt(q.get("height"), 10);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  } else {
    const cam = JSON.parse(q.get("camera"));
    w = cam.width;
    h = cam.height;
    camera = exactCamera(cam, 1e-3, 1e4);
    const res = await fetch("/shaders/nex_mpi.glsl");
    if (!res.ok) throw new Error("nex_mpi.glsl: HTTP " + res.status);
    await useExtension(gltf, await res.text(), q.get("vd") !== "0", q.get("linear") === "1");
  }
  const renderer = new THREE.WebGLRenderer({ antialias: false, alpha: false, preserveDrawingBuffer: true });
  renderer.setPixelRatio(1);
  renderer.setSize(w, h);
  renderer.setClearColor(0x000000, 1);
  document.body.appendChild(renderer.domElement);
  if (q.get("linear") === "1") {
    // Linear light: the scene into a half-float target (three.js writes linear values there), then one
    // full-screen pass that encodes to sRGB (written as they are: a raw ShaderMaterial is not converted).
    const target = new THREE.WebGLRenderTarget(w, h, { type: THREE.HalfFloatType, depthBuffer: false });
    renderer.setRenderTarget(target);
    renderer.render(scene, camera);
    renderer.setRenderTarget(null);
    const encode = new THREE.ShaderMaterial({
      glslVersion: THREE.GLSL3,
      uniforms: { src: { value: target.texture } },
      vertexShader: "void main() { gl_Position = vec4(position.xy, 0.0, 1.0); }",
      fragmentShader: `precision highp float;
        uniform sampler2D src;
        out vec4 outColor;
        void main() {
          vec3 c = clamp(texelFetch(src, ivec2(gl_FragCoord.xy), 0).rgb, 0.0, 1.0);
          outColor = vec4(mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(vec3(0.0031308), c)), 1.0);
        }`,
      depthTest: false, depthWrite: false,
    });
    const quad = new THREE.Mesh(new THREE.PlaneGeometry(2, 2), encode);
    quad.frustumCulled = false;
    const post = new THREE.Scene();
    post.add(quad);
    renderer.render(post, new THREE.Camera());
  } else {
    renderer.render(scene, camera);
  }
  const gl = renderer.getContext();
  gl.finish();
  const errors = [];
  renderer.info.programs && renderer.info.programs.forEach((p) => p.diagnostics && !p.diagnostics.runnable && errors.push(p.name));
  if (errors.length) throw new Error("shader programs failed: " + errors.join(", "));
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  document.title = "rendered";
} catch (e) {
  document.title = "error: " + (e && e.message ? e.message : e);
  console.error(e);
}
