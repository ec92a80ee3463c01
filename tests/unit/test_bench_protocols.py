"""The protocol harness's ablations (benchmarks/protocols.py): what each one takes away."""

from __future__ import annotations

import dataclasses

from graph_rec.runs import GraphOptions, build_pipeline
from kg_builders.builders.node_text import node_texts
from kg_builders.sources.synthetic import make_synthetic_world
from tests.benchmark_scripts import load_benchmark

protocols = load_benchmark("protocols")


def _texts(ablation: dict) -> tuple[list[str], dict[str, list[str]]]:
    tables = make_synthetic_world(num_users=30, num_items=40, interactions_per_user=8, seed=1, with_images=False)
    tables = protocols.without_item_columns(tables, ablation.get("drop_items", ()))
    g = dataclasses.asdict(GraphOptions(**ablation.get("graph", {})))
    g.pop("entities")
    kg, _ = build_pipeline(
        tables,
        split="random",
        split_settings={"ratios": (0.8, 0.1, 0.1), "seed": 2026},
        builder_options=g,
        entities="none",
        progress=False,
    )
    return kg.node_types, node_texts(kg)


def test_graph_ablations_take_the_knowledge_out_of_the_texts_too():
    types, texts = _texts({})
    assert {"tag", "entity"} <= set(types)
    assert any("Tags:" in t for t in texts["item"]) and any("Genres:" in t for t in texts["item"])
    # the view ablations keep these texts; the graph ablations must not
    options = protocols.GRAPH_ABLATIONS["graphrec - tags (graph and texts)"]
    types, texts = _texts(options)
    assert "tag" not in types and not any("Tags:" in t for t in texts["item"] + texts["user"])
    assert any("Genres:" in t for t in texts["item"])  # only the tags went
    options = protocols.GRAPH_ABLATIONS["graphrec - entities (graph and texts)"]
    types, texts = _texts(options)
    assert "entity" not in types and "tag" in types
    # MovieLens-like genres are an item column the texts read directly: dropping the genre nodes
    # alone left "Genres: ..." in every item text and "Likes: <genres>" in every user's
    assert not any(w in t for t in texts["item"] + texts["user"] for w in ("Genres:", "Likes:"))
    assert any("Tags:" in t for t in texts["item"])
    options = protocols.GRAPH_ABLATIONS["graphrec - knowledge graph (graph and texts)"]
    types, texts = _texts(options)
    assert set(types) == {"user", "item"}
    assert not any(w in t for t in texts["item"] + texts["user"] for w in ("Tags:", "Genres:", "Likes:"))


def test_graph_ablation_rows_measure_diversity_in_the_protocols_texts():
    """A row measured in its ablated graph's own texts is another space: marked, never shown as comparable."""
    import numpy as np

    tables = make_synthetic_world(num_users=30, num_items=40, interactions_per_user=8, seed=1, with_images=False)
    kg, sp = build_pipeline(
        tables,
        split="random",
        split_settings={"ratios": (0.8, 0.1, 0.1), "seed": 2026},
        builder_options={},
        entities="none",
        progress=False,
    )
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    kg.features.setdefault("item", {})["text"] = a
    settings = {"l2": 10.0}
    own = protocols.run_one(kg, sp, "ease", settings, {}, {}, (10, 20))
    given = protocols.run_one(kg, sp, "ease", settings, {}, {}, (10, 20), item_text=b)
    assert own["test"]["recall@20"] == given["test"]["recall@20"]  # the lists are the same
    assert own["test"]["diversity@20"] != given["test"]["diversity@20"]  # measured in the texts given
    row = {"valid": own["valid"], "test": own["test"], "seconds_to_best": 0.0}
    payload = {
        "datasets": {
            "d": {
                "runs": {
                    "ease": {**row, "model": "ease"},
                    "graphrec - tags (graph and texts)": {**row, "graph": {"tags": False}},
                    "graphrec - entities (graph and texts)": {
                        **row,
                        "graph": {"genres": False},
                        "diversity_in": "protocol item texts",
                    },
                }
            }
        }
    }
    md = protocols.to_markdown(payload)
    old = next(line for line in md.splitlines() if line.startswith("| graphrec - tags"))
    new = next(line for line in md.splitlines() if line.startswith("| graphrec - entities"))
    assert ")†" in old and "†" not in new and "† diversity measured in the ablated graph's own item texts" in md
