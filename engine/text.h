// Small text helpers for user-facing errors: "did you mean ...?" suggestions.
#pragma once
#include <string>
#include <vector>

namespace lowbit {

// Levenshtein distance (insertions, deletions, substitutions).
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to name (first on ties); empty when there are no candidates.
std::string closest_match(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace lowbit
