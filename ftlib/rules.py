"""Hand-written sentiment rules, and three ways to combine them with a fine-tuned model (notebook 09).

The rules (written for this course, nothing downloaded):

* a **lexicon**: a few hundred English words that usually mean a positive or a negative review,
  :data:`POSITIVE` and :data:`NEGATIVE` (weight 1 each);
* **intensifiers** (``very``, ``really``, ...) double the next sentiment word, **down-toners**
  (``somewhat``, ``slightly``, ...) halve it;
* **negation**: a negator (``not``, ``never``, ``n't``, ``no``, ...) flips the sign of the
  sentiment words among the next ``negation_window`` tokens; punctuation and ``but`` end the scope;
* **contrast**: after the last ``but`` / ``however`` the clause that follows decides, when it
  holds any sentiment at all ("slow , but ultimately moving" is positive).

:class:`RuleScorer` turns a sentence into a :class:`RuleResult`: a score (positive > 0 > negative),
a label (1, 0, or ``None`` = **abstain** when no rule fires or the rules cancel out), and the rules
that fired. :func:`coverage_accuracy` measures a rule set: how often it does not abstain
(*coverage*) and how often it is right when it speaks (*accuracy on covered*).

Combining rules with a model:

* :func:`rule_distribution` -- the rules' soft label ``[P(neg), P(pos)] = [1 - s, s]`` with
  ``s = sigmoid(sharpness * score)``;
* :func:`constraint_loss` -- ``KL(model || rules)`` on the sentences where the rules fire, the
  term that the "mixed loss" ``CE + lambda * KL`` adds;
* :class:`RulePrior` -- feeds that term to :func:`ftlib.train.fit` (whose ``loss_fn`` sees only
  logits, labels and model): a forward pre-hook reads the token ids the model is about to see and
  looks up each sentence's rule distribution (and whether it has a gold label);
* :func:`rule_loss` -- the mixed loss ``CE(gold rows) + lambda * KL(rows where the rules fire)``,
  shared by :class:`RulePrior` and :func:`rule_task`;
* :func:`rule_task` -- a ``task`` for ``fit`` whose batches carry the rule columns themselves
  (``rule_probs``, ``fires``, ``labelled``): the way for batches you build, e.g. cached features;
* :func:`override` -- post-processing: replace a model's low-confidence predictions by the rules'
  label where the rules are confident.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from ftlib.errors import CourseError

__all__ = ["POSITIVE", "NEGATIVE", "NEGATORS", "INTENSIFIERS", "DOWNTONERS", "CONTRAST",
           "tokenize", "RuleResult", "RuleScorer", "coverage_accuracy", "rule_distribution",
           "constraint_loss", "RulePrior", "override"]

# --- the lexicon: written by hand for movie reviews -------------------------------------------

POSITIVE = frozenset("""
good great excellent wonderful superb outstanding terrific fantastic fine nice lovely beautiful
beautifully gorgeous stunning brilliant brilliantly masterpiece masterful masterfully perfect perfectly
best better finest amazing amazingly astonishing remarkable remarkably extraordinary exceptional
impressive impressively marvelous marvellous splendid delightful delight delights delighted charming
charm charms charmer enchanting engaging engrossing absorbing compelling gripping riveting
fascinating intriguing interesting entertaining entertains fun funny hilarious hilariously witty
wit clever cleverly smart intelligent intelligently thoughtful insightful wise moving touching
poignant heartfelt heartwarming tender warm sweet affecting powerful powerfully memorable
unforgettable haunting thrilling exciting exhilarating suspenseful inventive imaginative original
fresh refreshing creative innovative ambitious bold daring vivid rich richly elegant graceful
sharp crisp polished accomplished skillful skilful skillfully assured confident solid strong
sincere honest genuine authentic truthful moving uplifting inspiring inspired inspirational joyous
joy joyful pleasure pleasant pleasing pleasurable enjoy enjoyed enjoyable enjoying love loved
lovely loves loving likable likeable appealing winning triumph triumphant success successful
succeeds succeed works worthwhile worthy admirable admire admired respect recommend recommended
satisfying satisfies rewarding treat gem classic glorious wondrous magical magic irresistible
captivating mesmerizing mesmerising spellbinding dazzling breathtaking spectacular
heartbreaking luminous radiant sublime transcendent tasty beauty best-ever well-made well-crafted
well-acted well-written well-done engaging deft deftly nuanced subtle intelligent first-rate
top-notch enjoyably fun-filled laugh laughs laughing hoot rousing stirring soaring vibrant lively
energetic zippy spirited playful humor humour humorous amusing amuses amused surprising surprises
refreshingly smartly tight taut slick stylish handsome handsomely cool awesome wow exquisite
exquisitely excellently finely precious treasure rare unique distinctive keen honesty integrity
compassionate humane humanity warmth intimate perceptive provocative thought-provoking
resonant resonance richness depth profound profoundly celebrate celebration fascinate fascinated
intrigue gifted talented talent talents virtuoso perfection pure purely clarity grace easy
breezy effortless effortlessly seamless sensitive sensitively eloquent gracefully
""".split())

NEGATIVE = frozenset("""
bad badly worse worst awful terrible terribly horrible horribly dreadful dreadfully atrocious
abysmal lousy poor poorly weak weakest feeble flimsy lame mediocre mediocrity inept incompetent
amateurish clumsy clumsily sloppy shoddy messy mess muddled muddle confused confusing incoherent
pointless meaningless aimless shapeless dull dullest boring bored bore bores tedious tediously
tiresome tired tiring monotonous plodding sluggish slow lifeless listless bland flat stale trite
cliched clichéd cliche cliché cliches clichés formulaic predictable derivative unoriginal generic
banal hackneyed stock contrived forced labored laboured strained overwrought overblown overlong
overdone overacted overbearing pretentious self-indulgent indulgent smug preachy heavy-handed
sappy mawkish maudlin sentimental schmaltzy manipulative cheesy corny silly stupid dumb idiotic
moronic ridiculous ludicrous absurd laughable preposterous implausible unconvincing unbelievable
annoying irritating grating obnoxious unpleasant ugly nasty mean-spirited vulgar crude tasteless
offensive repellent repulsive disgusting distasteful sour bitter grim dreary dismal depressing
joyless humorless humourless witless charmless pointlessly mindless brainless empty hollow
shallow superficial thin slight forgettable unmemorable uninspired uninspiring uninteresting
uninvolving unfunny unwatchable unbearable insufferable interminable endless excruciating
painful painfully waste wasted wasting wastes fail fails failed failure failing flop disaster
disastrous mistake mistakes misfire misfires misguided misbegotten botched bungled ruined ruins
problem problems flaw flaws flawed fault faults lacked missing miss misses
disappoint disappoints disappointed disappointing disappointment letdown regret sorry junk garbage
trash trashy rubbish drivel dreck crap crappy stinks stinker sucks hate hated hates loathe
loathsome dislike avoid unfortunately unfortunate sadly alas awkward awkwardly stiff
wooden hokey hammy stilted lumbering ponderous leaden turgid bloated sprawling uneven
inconsistent disjointed choppy chaotic numbing mind-numbing sleep asleep sleepy snooze yawn
headache nonsense gimmick gimmicky cynical exploitative exploit exploits cheap cheaply tacky
shrill loud obvious routine unnecessary needless unfocused overproduced underwritten
undercooked half-baked ill-conceived misjudged miscast dud stupefying tired dim dimwitted
sloppily unimaginative uninvolving unsatisfying unconvincingly unremarkable lackluster
lacklustre limp lazy listlessly stupidity bore frustrating frustrated irritates annoys
annoyingly repetitive repetitious redundant tedium boredom emptiness dull-witted dumbed
""".split())

NEGATORS = frozenset({"not", "n't", "no", "never", "nothing", "neither", "nor", "hardly", "barely",
                      "scarcely", "without", "none", "nobody", "cannot", "lacks", "lack", "lacking"})
INTENSIFIERS = frozenset({"very", "really", "so", "extremely", "truly", "incredibly", "utterly", "totally",
                          "absolutely", "deeply", "most", "highly", "thoroughly", "exceptionally",
                          "particularly", "especially", "remarkably", "too", "genuinely", "downright"})
DOWNTONERS = frozenset({"somewhat", "slightly", "fairly", "rather", "mildly", "moderately", "kinda",
                        "sort", "kind", "almost", "nearly", "occasionally", "sometimes"})
CONTRAST = frozenset({"but", "however"})
# "lack(s)" negates what follows ("lacks charm" is negative) *and* is negative on its own: as a
# negator it flips the next sentiment word, and it is not counted as a word of its own.
_SCOPE_ENDS = frozenset({".", ",", ";", ":", "!", "?", "--", "-"}) | CONTRAST

_TOKEN = re.compile(r"n't|[a-z0-9]+(?:[-'][a-z0-9]+)*|[.,;:!?]|--")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens; ``don't`` and SST-2's ``do n't`` both give ``n't``.

    Curly apostrophes count as straight ones; other characters (quotes, brackets) are dropped.
    """
    if not isinstance(text, str):
        raise CourseError(f"The rules score text: expected a str, got {type(text).__name__}. "
                          "Pass one sentence (or a list of them to score_many).")
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"([a-z])n't\b", r"\1 n't", text)          # don't -> do n't, can't -> ca n't
    text = re.sub(r"\bcannot\b", "can not", text)
    return [t for t in _TOKEN.findall(text) if t != "'"]


@dataclass
class RuleResult:
    """What the rules say about one sentence.

    ``score`` > 0 positive, < 0 negative; ``label`` 1 / 0, or ``None`` when the rules abstain;
    ``fired``: a readable line per rule that fired, e.g. ``"not flips 'funny' (+1 -> -1)"``.
    """
    score: float
    label: int | None
    fired: list = field(default_factory=list)

    @property
    def abstain(self) -> bool:
        return self.label is None


class RuleScorer:
    """Score sentences with the lexicon and the negation / intensifier / contrast rules.

    ``negation_window``: how many tokens after a negator it flips (0 turns negation off).
    ``contrast``: apply the "the clause after *but* decides" rule. ``intensify``: the factor for
    intensifiers (1 turns them off; down-toners use its inverse). ``positive`` / ``negative``: your
    own word sets instead of the course lexicon.
    """

    def __init__(self, *, negation_window: int = 3, contrast: bool = True, intensify: float = 2.0,
                 positive=None, negative=None):
        if not isinstance(negation_window, int) or negation_window < 0:
            raise CourseError(f"negation_window must be a whole number >= 0, got {negation_window!r}.")
        if intensify <= 0:
            raise CourseError(f"intensify must be > 0 (1 switches intensifiers off), got {intensify}.")
        self.negation_window, self.contrast, self.intensify = negation_window, contrast, float(intensify)
        self.positive = frozenset(POSITIVE if positive is None else positive)
        self.negative = frozenset(NEGATIVE if negative is None else negative)
        both = self.positive & self.negative
        if both:
            raise CourseError(f"Words in both the positive and the negative lexicon: {sorted(both)[:5]}. "
                              "Keep each word on one side.")

    def _clause(self, tokens: list[str], fired: list) -> float:
        score, flip_left, boost = 0.0, 0, 1.0
        for tok in tokens:
            if tok in _SCOPE_ENDS:
                flip_left, boost = 0, 1.0
                continue
            if tok in NEGATORS and self.negation_window > 0:
                flip_left, negator = self.negation_window, tok
                continue
            polarity = 1 if tok in self.positive else -1 if tok in self.negative else 0
            if polarity:
                value = polarity * boost
                if flip_left > 0:
                    fired.append(f"{negator} flips {tok!r} ({value:+g} -> {-value:+g})")
                    value = -value
                else:
                    fired.append(f"{tok!r} {value:+g}")
                score += value
                boost = 1.0
            elif tok in INTENSIFIERS:
                boost = self.intensify
            elif tok in DOWNTONERS:
                boost = 1.0 / self.intensify
            if flip_left > 0:
                flip_left -= 1
        return score

    def score(self, text: str) -> RuleResult:
        """Score one sentence; see the class docstring."""
        tokens = tokenize(text)
        fired: list = []
        cut = max((i for i, t in enumerate(tokens) if t in CONTRAST), default=None) if self.contrast else None
        if cut is None:
            total = self._clause(tokens, fired)
        else:
            before = self._clause(tokens[:cut], fired)
            n_before = len(fired)
            after = self._clause(tokens[cut + 1:], fired)
            if after != 0:
                if before != 0:
                    fired.insert(n_before, f"{tokens[cut]}: the clause after it decides ({before:+g} ignored)")
                total = after
            else:
                total = before
        total = float(total)
        label = None if total == 0 else int(total > 0)
        return RuleResult(total, label, fired)

    def score_many(self, texts) -> list[RuleResult]:
        """:meth:`score` for each sentence of a list (or any iterable of str)."""
        if isinstance(texts, str):
            raise CourseError("score_many takes a list of sentences; for one sentence call score(text).")
        return [self.score(t) for t in texts]

    def __call__(self, text):
        return self.score(text) if isinstance(text, str) else self.score_many(text)


def coverage_accuracy(predicted, gold, fallback: int | None = None) -> dict:
    """Coverage and accuracy of rule labels (``None`` = abstain) against gold labels 0/1.

    Returns ``coverage`` (share of sentences the rules label), ``accuracy_covered`` (share right
    among those; ``nan`` if none), ``n`` and ``n_covered``; with ``fallback`` (a label used where
    the rules abstain, e.g. the majority class) also ``accuracy`` over all sentences.
    ``predicted`` may also hold :class:`RuleResult` objects.
    """
    predicted = [p.label if isinstance(p, RuleResult) else p for p in predicted]
    gold = [int(g) for g in gold]
    if len(predicted) != len(gold):
        raise CourseError(f"{len(predicted)} predictions but {len(gold)} gold labels: they must pair up.")
    if not gold:
        raise CourseError("No sentences: coverage and accuracy of an empty set are undefined.")
    if any(p not in (0, 1, None) for p in predicted) or any(g not in (0, 1) for g in gold):
        raise CourseError("Labels must be 0 or 1 (and predictions may be None for 'abstain').")
    if fallback not in (None, 0, 1):
        raise CourseError(f"fallback must be 0, 1 or None, got {fallback!r}.")
    covered = [(p, g) for p, g in zip(predicted, gold) if p is not None]
    out = {"n": len(gold), "n_covered": len(covered), "coverage": len(covered) / len(gold),
           "accuracy_covered": sum(p == g for p, g in covered) / len(covered) if covered else math.nan}
    if fallback is not None:
        out["accuracy"] = sum((fallback if p is None else p) == g for p, g in zip(predicted, gold)) / len(gold)
    return out


def rule_distribution(scores, sharpness: float = 1.0) -> torch.Tensor:
    """The rules' soft label, shape (N, 2): ``[1 - s, s]`` with ``s = sigmoid(sharpness * score)``.

    A score of 0 (abstain) gives [0.5, 0.5]; score +1 gives 0.73 positive at sharpness 1.
    """
    if sharpness <= 0:
        raise CourseError(f"sharpness must be > 0, got {sharpness}.")
    s = torch.as_tensor([r.score if isinstance(r, RuleResult) else r for r in scores], dtype=torch.float32)
    if s.dim() != 1:
        raise CourseError(f"scores must be one number per sentence, got shape {tuple(s.shape)}.")
    pos = torch.sigmoid(sharpness * s)
    return torch.stack([1 - pos, pos], dim=1)


def constraint_loss(logits: torch.Tensor, rule_probs: torch.Tensor, mask: torch.Tensor | None = None,
                    reduction: str = "mean") -> torch.Tensor:
    """``KL(p_model || p_rules)`` per sentence, averaged over the sentences where ``mask`` is True.

    ``p_model = softmax(logits)``. The KL is 0 exactly where the model's distribution equals the
    rules'; its gradient moves the logits towards the rules. Where no sentence in the batch is
    masked in, the loss is 0 (with a gradient of 0), so a batch without rule coverage costs nothing.
    """
    if logits.shape != rule_probs.shape or logits.dim() != 2:
        raise CourseError(f"logits {tuple(logits.shape)} and rule_probs {tuple(rule_probs.shape)} must both "
                          "be (batch, classes).")
    rule_probs = rule_probs.to(logits.device, logits.dtype)
    if (rule_probs <= 0).any() or not torch.allclose(rule_probs.sum(-1), torch.ones_like(rule_probs[:, 0]), atol=1e-4):
        raise CourseError("rule_probs must be probabilities > 0 summing to 1 per row (make them with "
                          "rule_distribution); a 0 would make the KL infinite.")
    if reduction not in ("mean", "none"):
        raise CourseError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    logp = torch.log_softmax(logits, dim=-1)
    kl = (logp.exp() * (logp - rule_probs.log())).sum(-1)
    if mask is None:
        mask = torch.ones(len(kl), dtype=torch.bool, device=kl.device)
    mask = mask.to(kl.device).bool()
    if reduction == "none":
        return kl * mask
    return (kl * mask).sum() / mask.sum().clamp(min=1)


class RulePrior:
    """Give :func:`ftlib.train.fit` a ``loss_fn`` that knows each sentence's rule distribution.

    ``fit`` passes every batch column but ``labels`` to the model and gives ``loss_fn`` only
    ``(logits, labels, model)``. Rather than add a column (which the model's forward would reject),
    this looks the rules up from the sentence itself: ``attach(model)`` registers a forward pre-hook
    that reads the token ids the model is about to see, and finds each row (padding removed) in a
    table built from the tokenised training set.

    ``input_ids``: the tokenised training sentences (lists of ids, unpadded); ``rule_probs``: (N, 2)
    from :func:`rule_distribution`; ``fires``: bool per sentence (the rules did not abstain);
    ``labelled``: bool per sentence (its label is gold; unlabelled rows carry a placeholder label
    that the cross-entropy term skips). The loss is ``CE(labelled rows) + lam * KL(fired rows)``.
    """

    def __init__(self, input_ids, rule_probs, fires, labelled, lam: float = 1.0):
        rule_probs = torch.as_tensor(rule_probs, dtype=torch.float32)
        n = len(input_ids)
        if not (len(rule_probs) == len(fires) == len(labelled) == n) or n == 0:
            raise CourseError(f"input_ids ({n}), rule_probs ({len(rule_probs)}), fires ({len(fires)}) and "
                              f"labelled ({len(labelled)}) must describe the same non-empty list of sentences.")
        if lam < 0:
            raise CourseError(f"lam (the weight of the rule term) must be >= 0, got {lam}.")
        self.lam = float(lam)
        self.table = {}
        for ids, p, f, lab in zip(input_ids, rule_probs, fires, labelled):
            key = tuple(int(i) for i in ids)
            value = (p, bool(f), bool(lab))
            if key in self.table and (self.table[key][1:] != value[1:] or not torch.equal(self.table[key][0], p)):
                raise CourseError("The same sentence appears twice with different rule information "
                                  "(labelled once and unlabelled once?): de-duplicate the sentences first.")
            self.table[key] = value
        self.current = None
        self._handle = None

    def _hook(self, module, args, kwargs):
        if not module.training:               # evaluation: nothing to look up
            self.current = None
            return
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if ids is None:
            raise CourseError("RulePrior needs the model to be called with input_ids=... (as fit does).")
        rows = []
        for row, m in zip(ids.tolist(), mask.tolist() if mask is not None else [None] * len(ids)):
            key = tuple(i for i, keep in zip(row, m) if keep) if m is not None else tuple(row)
            if key not in self.table:
                raise CourseError("A training sentence is not in the RulePrior table: build it from the same "
                                  "tokenised data set the loader uses.")
            rows.append(self.table[key])
        self.current = (torch.stack([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
                        torch.tensor([r[2] for r in rows]))

    def attach(self, model):
        """Start watching ``model``'s inputs; returns self (call :meth:`detach` when done)."""
        self.detach()
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def loss_fn(self, logits, labels, model=None):
        """``CE`` over the labelled rows + ``lam * KL(model || rules)`` over the rows where rules fire."""
        if self.current is None:
            raise CourseError("RulePrior.loss_fn has no rule information for this batch: call "
                              "prior.attach(model) before fit(...).")
        probs, fires, labelled = self.current
        if len(probs) != len(logits):
            raise CourseError("RulePrior saw a different batch than the loss: attach it to the model fit trains.")
        return rule_loss(logits, labels, probs, fires, labelled, self.lam)


def rule_loss(logits, labels, rule_probs, fires, labelled, lam: float = 1.0) -> torch.Tensor:
    """The hybrid loss: mean ``CE`` over the ``labelled`` rows + ``lam *`` mean ``KL(model || rules)`` over
    the rows where the rules ``fires``. Rows that are not labelled carry a placeholder label, unused.
    ``lam=0`` with every row labelled is plain cross-entropy."""
    if lam < 0:
        raise CourseError(f"lam (the weight of the rule term) must be >= 0, got {lam}.")
    fires, labelled = fires.to(logits.device).bool(), labelled.to(logits.device).bool()
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(logits, labels.to(logits.device), reduction="none")
    ce = (ce * labelled).sum() / labelled.sum().clamp(min=1)
    if lam == 0:
        return ce
    return ce + lam * constraint_loss(logits, rule_probs.to(logits.device), fires)


RULE_COLUMNS = ("rule_probs", "fires", "labelled")


def rule_task(lam: float = 1.0):
    """A ``task`` for :func:`ftlib.train.fit` whose batches carry the rules with them.

    Each batch holds the model's inputs, ``labels`` and the columns ``rule_probs`` (B, 2), ``fires``
    and ``labelled`` (B,); the task takes those out, runs the model on the rest and returns
    :func:`rule_loss`. This is the way when the batches are yours (cached features, lesson 09); for a
    loader of token ids that must stay unchanged, :class:`RulePrior` finds the rules from the ids.
    """
    if lam < 0:
        raise CourseError(f"lam (the weight of the rule term) must be >= 0, got {lam}.")

    def rules_and_labels(model, batch):
        missing = [k for k in RULE_COLUMNS + ("labels",) if k not in batch]
        if missing:
            raise CourseError(f"rule_task's batches need the columns {list(RULE_COLUMNS) + ['labels']}; "
                              f"this one lacks {missing}.")
        inputs = {k: v for k, v in batch.items() if k not in RULE_COLUMNS + ("labels",)}
        logits = model(**inputs).logits
        loss = rule_loss(logits, batch["labels"], batch["rule_probs"], batch["fires"], batch["labelled"], lam)
        return loss, torch.tensor(len(logits), device=loss.device), None

    rules_and_labels.__name__ = f"rule_task(lam={lam:g})"
    return rules_and_labels


def override(model_probs, rule_results, model_below: float = 0.7, rules_at_least: float = 2.0):
    """Post-processing: the model's label, except where it is unsure and the rules are sure.

    ``model_probs``: (N, 2) probabilities; ``rule_results``: :class:`RuleResult` per sentence (or
    scores). A prediction is replaced by the rules' label where ``max(model_probs) < model_below``
    and ``|rule score| >= rules_at_least``. Returns ``(labels, replaced)``: a long tensor of labels
    and a bool tensor saying which were replaced.
    """
    p = torch.as_tensor(model_probs, dtype=torch.float32)
    scores = torch.as_tensor([r.score if isinstance(r, RuleResult) else r for r in rule_results],
                             dtype=torch.float32)
    if p.dim() != 2 or p.shape[1] != 2 or len(p) != len(scores):
        raise CourseError(f"model_probs must be (N, 2) and there must be one rule result per row: got "
                          f"{tuple(p.shape)} and {len(scores)}.")
    if not 0.5 <= model_below <= 1.0 or rules_at_least <= 0:
        raise CourseError("Use 0.5 <= model_below <= 1 and rules_at_least > 0.")
    labels = p.argmax(-1)
    replaced = (p.max(-1).values < model_below) & (scores.abs() >= rules_at_least)
    labels = torch.where(replaced, (scores > 0).long(), labels)
    return labels, replaced
