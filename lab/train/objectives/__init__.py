"""One module per training objective, each with ``build(b: lab.train.methods.Build)`` → its TRL trainer.
The objective's entry in ``lab.train.methods.OBJECTIVES`` says what else the lab needs to know about it."""
