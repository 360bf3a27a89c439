"""task=cluster: fit (or load) an encoder -> encode -> reduce -> cluster -> (repair) -> score -> figures.

The clustering assignment's job. The model is any `Encoder` (models/protocols.py): the package's autoencoders,
sparse coding, raw pixels, random features, or your own (model=custom). The reducer and the clusterer are
scikit-learn estimators, or adapters that behave as such.

    check.py    the pre-flight: model, reducer and clusterer built and checked against the data and the code size
    stages.py   run(): the stages in order, each a function (fit, encode, reduce, cluster, rebalance, score)
    views.py    what the job draws and tabulates: reconstructions, atoms, 2-D views, the codes and assignments
"""

from __future__ import annotations

from experiments.jobs import MAX, MIN, JobKind
from experiments.jobs.cluster.check import check
from experiments.jobs.cluster.stages import ddp_worker, run

KIND = JobKind(
    name="cluster",
    reads=("model", "trainer", "reducer", "clusterer", "task"),
    tagged_by=("model", "data", "reducer", "clusterer"),
    scores={"public_score": MAX, "private_score": MAX, "acc": MAX, "nmi": MAX, "ari": MAX, "knn_acc": MAX,
            "recon_mse": MIN},
    # The clustering assignment's report columns first, in its order, then the rest of what a job reports.
    columns=[
        ("Public Score", "public_score"),
        ("Private Score", "private_score"),
        ("Reduced Method", "reduced_method"),
        ("Latent Dimension", "latent_dim"),
        ("Reduced Dimension", "reduced_dim"),
        ("acc", "acc"),
        ("nmi", "nmi"),
        ("ari", "ari"),
        ("knn_acc", "knn_acc"),
        ("recon_mse", "recon_mse"),
        ("code_sparsity", "code_sparsity"),
        ("clusterer", "clusterer"),
        ("n_clusters", "n_clusters"),
        ("model", "model"),
        ("cache", "cache"),
    ],
    labelled_by=("model", "Reduced Method", "Latent Dimension", "Reduced Dimension", "clusterer"),
    check=check,
    run=run,
    shown=("acc", "nmi", "knn_acc", "private_score"),
    ddp_worker=ddp_worker,
)
