"""Stage 4, training: labelled slots and the split, the ``tf.data`` stream, models, the fit and the
run folder."""
