// Run-time ISA detection and the LOWBIT_MAX_CPU_ISA cap (engine/cpu/isa.h).
#include <gtest/gtest.h>

#include <string>

#include "lowbit/engine/cpu/isa.h"
#include "lowbit/engine/error.h"

namespace lowbit::cpu {
namespace {

TEST(Isa, ParsesOurNamesAndOneDnnSpellings) {
  EXPECT_EQ(parse_isa("avx2", "X"), Isa::avx2);
  EXPECT_EQ(parse_isa("AVX2", "X"), Isa::avx2);
  EXPECT_EQ(parse_isa("avx512", "X"), Isa::avx512);
  EXPECT_EQ(parse_isa("AVX512_CORE", "X"), Isa::avx512);
  EXPECT_EQ(parse_isa("avx512_core_vnni", "X"), Isa::avx512_vnni);
  EXPECT_EQ(parse_isa("avx512_bf16", "X"), Isa::avx512_bf16);
  EXPECT_EQ(parse_isa("AVX512_CORE_BF16", "X"), Isa::avx512_bf16);
  EXPECT_EQ(parse_isa("all", "X"), Isa::avx512_bf16);
  EXPECT_EQ(parse_isa("generic", "X"), Isa::generic);
  for (Isa i : {Isa::generic, Isa::avx2, Isa::avx512, Isa::avx512_vnni, Isa::avx512_bf16})
    EXPECT_EQ(parse_isa(isa_name(i), "X"), i);
}

TEST(Isa, BadNameIsAOneLineErrorNamingTheVariable) {
  try {
    parse_isa("avx3", "LOWBIT_MAX_CPU_ISA");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("LOWBIT_MAX_CPU_ISA='avx3' is not an ISA level"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(Isa, CapLowersWhatTheDispatchersMayPickAndRestores) {
  const Isa top = max_isa();
  EXPECT_LE(static_cast<int>(top), static_cast<int>(detected_isa()));
  {
    const IsaCapGuard cap(Isa::generic);
    EXPECT_EQ(max_isa(), Isa::generic);
    EXPECT_FALSE(isa_allows(Isa::avx2));
    EXPECT_TRUE(isa_allows(Isa::generic));
  }
  EXPECT_EQ(max_isa(), top);
  {
    const IsaCapGuard cap(Isa::avx512_bf16);  // a cap above the CPU never raises the level
    EXPECT_EQ(max_isa(), top);
  }
  EXPECT_NE(isa_description().find(isa_name(detected_isa())), std::string::npos);
}

}  // namespace
}  // namespace lowbit::cpu
