"""The bilevel view of meta-learning (``shared/reference.md``, "The bilevel view"), in numpy float64.

- :mod:`core.bilevel.quadratic`: quadratic tasks with every meta-gradient estimator (MAML, FO-MAML, Reptile, iMAML,
  FO-B-MAML forward and symmetric) and the exact meta-gradient in closed form, and outer optimisation on a family
  with training's outer steps (:mod:`core.meta.outer_step`: SGD, clipped, normalized, SNGDM, Adam) on float64 tensors.
"""
