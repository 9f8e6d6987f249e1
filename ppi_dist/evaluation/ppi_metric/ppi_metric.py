"""SE-CAI's PPI metric set as a Hugging Face `evaluate` module, loadable offline by path.

    import evaluate, ppi_dist.evaluation.ppi_metric
    metric = evaluate.load(ppi_dist.evaluation.ppi_metric.PATH)
    metric.compute(predictions=probabilities, references=labels)

`predictions` are scores in [0, 1] (probabilities), not hard labels: the module searches the
decision threshold, then reports accuracy, precision, recall, F1, MCC, AUROC, AUPR, the
weighted score and the trivial predictors' scores. A `threshold=` argument evaluates at a
fixed threshold instead (e.g. on test, at the one chosen on validation).
"""

import datasets
import evaluate
from ppi_dist.evaluation.threshold import evaluate_at
from ppi_dist.evaluation.threshold import search_threshold

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores (probability of interaction), floats.
    references: true labels, 0 or 1.
    threshold: optional fixed decision threshold; omitted, the threshold is searched.
    weights: optional dict of weights for accuracy, precision, recall, f1 (0.25 each).
    grid: "fixed" (0.01..0.99), "distinct" (every distinct score) or "both".
Returns:
    threshold, score, accuracy, precision, recall, f1, mcc, auroc, aupr, n,
    positive_fraction, all_positive_score, all_negative_score, single_class.
"""


class PPIMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, threshold=None, weights=None, grid="fixed"):
        if threshold is not None:
            result = evaluate_at(predictions, references, threshold, weights=weights)
        else:
            result = search_threshold(predictions, references, weights=weights, grid=grid)
        return result.summary()
