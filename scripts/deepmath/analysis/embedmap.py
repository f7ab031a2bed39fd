"""The embedding map: every compared dataset's items in one 2-D picture, coloured by dataset.

The paper shows DeepMath-103K in a region of its own, apart from the other open datasets.
Projection: scikit-learn's t-SNE (Barnes-Hut) after a PCA to at most 50 dimensions, on a
seeded sample of each dataset. Why scikit-learn: it is already in every environment that
embeds (sentence-transformers depends on it), it is well kept, and its t-SNE is seeded and
deterministic on CPU; umap-learn would add numba and llvmlite to the environment for a
picture, and openTSNE is faster only on samples far larger than a map needs (a few thousand
points per dataset are enough to see regions, and take a minute or two).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def sample_rows(sizes: Mapping[str, int], per_dataset: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted row indices of at most ``per_dataset`` rows of each dataset (seeded, no repeat)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in sizes.items():
        take = min(n, per_dataset)
        out[name] = np.sort(rng.choice(n, size=take, replace=False)) if take else np.array([], int)
    return out


def project(vectors: np.ndarray, seed: int, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE coordinates of the rows of ``vectors`` (PCA to <= 50 dimensions first)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 3:
        return np.zeros((n, 2))
    x = np.asarray(vectors, dtype=np.float32)
    dims = min(50, x.shape[1], n)
    if dims < x.shape[1]:
        x = PCA(n_components=dims, random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (n - 1) / 3),
        init="pca",
        random_state=seed,
        max_iter=1000,
    )
    return tsne.fit_transform(x)


def map_table(
    embeddings: Mapping[str, np.ndarray], per_dataset: int, seed: int, perplexity: float = 30.0
) -> pd.DataFrame:
    """One row per sampled item: dataset, its row in that dataset, x, y."""
    rows = sample_rows({k: len(v) for k, v in embeddings.items()}, per_dataset, seed)
    parts = [embeddings[k][idx] for k, idx in rows.items()]
    vectors = np.concatenate(parts) if parts else np.zeros((0, 2))
    xy = project(vectors, seed, perplexity)
    return pd.DataFrame(
        {
            "dataset": np.concatenate([[k] * len(idx) for k, idx in rows.items()]),
            "row": np.concatenate(list(rows.values())).astype(np.int64),
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )


def scatter(table: pd.DataFrame, path: str, title: str) -> None:
    """The map as a PNG, one colour per dataset (the first dataset drawn last, on top)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    names = list(dict.fromkeys(table["dataset"]))
    colours = plt.get_cmap("tab10")
    for i, name in reversed(list(enumerate(names))):
        part = table[table["dataset"] == name]
        ax.scatter(part["x"], part["y"], s=6, alpha=0.6, color=colours(i % 10), label=name)
    ax.legend(markerscale=3, fontsize=8, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
