"""Lightning modules, one per file: `autoencoder.ConvAutoencoder`."""
