"""Learning: data, losses and training loops (CPU, CUDA with AMP, DDP under torchrun).

* :mod:`.datasets`     shard datasets and their batches; :mod:`.patches` the reader's patch data
* :mod:`.losses`       the multi-task losses; :mod:`.domain` adversarial domain adaptation
* :mod:`.train`        the multi-task network's training (``train_args`` its command line)
* :mod:`.train_reader` the blur reader's training; :mod:`.train_refiner` its stage 2;
  :mod:`.readercal` the sigma calibration; :mod:`.distributed` torchrun's ranks for both loops
* :mod:`.metrics`, :mod:`.cocreading` depth metrics and the per-CoC-bin reading table: training
  validates with them, evaluation reports with them

Imports every group above it (optics and the helpers such as viz, synth, reading, model, estimate);
nothing below it.
"""
