"""CLIP guidance with pytti's semantics: perceptors, cutouts, losses, and the objective wrapping the model."""
