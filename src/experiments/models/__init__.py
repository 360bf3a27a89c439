"""Lightning modules, one per file: autoencoder.ConvAutoencoder, sparse_coding.SparseCoding, mlp.MLPClassifier,
lista.LISTA."""
