// CRC-32C (Castagnoli), the checksum of every checkpoint file and tensor: hardware crc32
// instructions on x86-64 with SSE4.2, a table otherwise (same values). Any change confined
// to 32 consecutive bits (so any single flipped byte) is always detected.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lowbit::io {

// Continues a CRC: crc32c(b, crc32c(a)) == crc32c(a + b); start with 0.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// "1a2b3c4d": the form stored in manifests and metadata.
std::string crc_hex(uint32_t crc);

namespace detail {
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);  // the table path, for tests
}

}  // namespace lowbit::io
