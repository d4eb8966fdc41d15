// LOWBIT_HD marks functions compiled for both host and device, so CPU loops and CUDA
// launchers run the same kernel bodies.
#pragma once
#if defined(__CUDACC__)
#define LOWBIT_HD __host__ __device__ __forceinline__
#else
#define LOWBIT_HD inline
#endif
