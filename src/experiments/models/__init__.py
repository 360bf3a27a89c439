"""Lightning modules, one per file: autoencoder.ConvAutoencoder, ista.SparseCoding, mlp.MLPClassifier,
lista.LISTA."""
