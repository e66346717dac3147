"""The NeX model in torch: MPI geometry and ray maths (``mpi``), the networks (``nex_model``) and the fused
CPU form of the coefficient MLP with its C kernel (``fused_mlp``, ``cpu_kernels``); ``reference_render``, the
slow per-pixel MPI renderer the fast one is tested against."""
