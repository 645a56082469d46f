// A 3D grid over a volume: out = in scaled by a weight that depends on (x, y, z).
extern "C" __global__ void volume_weight(const float* in, float* out, int nx, int ny, int nz) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x >= nx || y >= ny || z >= nz) return;
    long idx = ((long)z * ny + y) * nx + x;
    out[idx] = in[idx] * (float)(x + 2 * y + 3 * z) + (float)(gridDim.x * 100 + gridDim.y * 10 + gridDim.z);
}
