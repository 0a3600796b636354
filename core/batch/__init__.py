"""Studio batches: many people fitted on a Ray cluster (``likeness batch``).

``people.py`` decides who is in a batch and where each result goes;
``work.py`` fits one person (it runs in the workers); ``cli.py`` starts or
joins Ray, hands out tasks, shows progress and writes ``summary.json``.
"""
