"""The dataset analyses, for this run's dataset and any other in a known layout.

- :mod:`~deepmath.analysis.items`: every compared dataset as ``id, question, answer``;
- :mod:`~deepmath.analysis.contamination`: the share of each benchmark found in the raw pool,
  and the check that the final dataset holds none of it;
- :mod:`~deepmath.analysis.strings`: the all-pairs string check against a benchmark (MATH-500);
- :mod:`~deepmath.analysis.novelty`: items with no near-copy in any other dataset, and the
  pairwise overlaps;
- :mod:`~deepmath.analysis.embedmap`: a seeded 2-D map of all datasets;
- :mod:`~deepmath.analysis.profile`: answer types (Yes/No, choice letters, proofs, numbers, ...);
- :mod:`~deepmath.analysis.cli`: ``python -m deepmath.analysis <command>``, one per rule.

They reuse the curation's pieces (embeddings, exact neighbour search, the Indel measure of the
pre-check, the difficulty role), never copies of them.
"""
