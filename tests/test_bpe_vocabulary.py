"""The BPE learner behind the tiny CLIP vocabulary, on a hand-worked case."""

from cmaclip_tf.models import bpe_vocabulary


def test_learns_the_most_frequent_pairs_first():
    vocabulary, merges = bpe_vocabulary.learn_bpe(
        ["low low low lower lowest"], num_merges=10
    )
    # "l o" occurs 5 times; then "lo w</w>" (3) beats "lo w" (2); then
    # "lo w" ties "w e" (2 each) and wins on order.

    assert merges[0] == ("l", "o")
    assert merges[1] == ("lo", "w</w>")
    assert merges[2] == ("lo", "w")
    assert len(vocabulary) == 512 + len(merges) + 2
    assert vocabulary["<|endoftext|>"] == len(vocabulary) - 1
    assert vocabulary["<|startoftext|>"] == len(vocabulary) - 2
    assert vocabulary["low</w>"] == 512 + 1


def test_byte_map_is_a_bijection_of_256_characters():
    mapping = bpe_vocabulary.bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256
    assert mapping[ord("a")] == "a"
    assert mapping[ord(" ")] == "Ġ"
