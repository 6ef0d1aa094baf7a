"""The model families (the Gaussian VAE, the autoencoder, the VQ-VAE) and their registry, what they share, the
priors learned after a model, the perceptual term and the domain classifiers."""
