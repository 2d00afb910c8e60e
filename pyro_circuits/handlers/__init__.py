"""Every effect handler of the package, built on Pyro's public Messenger API.

* :mod:`~pyro_circuits.handlers.perturb` -- perturbation points and optogenetics;
* :mod:`~pyro_circuits.handlers.readout` -- reading guides out at their means;
* :mod:`~pyro_circuits.handlers.scale` -- scaling latent sites (KL warm-up).
"""

from pyro_circuits.handlers import perturb
from pyro_circuits.handlers.perturb import optogenetic, site, stimulus_gradient
from pyro_circuits.handlers.readout import PushMean, standard_normal
from pyro_circuits.handlers.scale import scale_latents

__all__ = [
    "PushMean",
    "optogenetic",
    "perturb",
    "scale_latents",
    "site",
    "standard_normal",
    "stimulus_gradient",
]
