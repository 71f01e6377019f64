"""Research tooling: cross-validation and the ablation table, paired comparisons of recipes,
re-judging finished runs, and the paired statistics they share."""
