package providers

import (
	"github.com/tollgate/tollgate/internal/jsonscan"
)

// ScoreSide reports whether v, one JSON value, is a side of a score call as vLLM's
// ScoreRequest union takes it: a string, a multimodal object ({"content": [...]}),
// or a list of both. The union skips a pair of members with any other value (an
// object without a content list, a number, null, a list of numbers) for the next
// pair, and so do the gateway's estimate and prefix hash.
func ScoreSide(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case '"':
		return true
	case '{':
		return scoreMultimodal(v)
	case '[':
		var a jsonscan.Array
		if !a.Reset(v) {
			return false
		}
		for {
			e, ok := a.Next()
			if !ok {
				return true
			}
			if len(e) == 0 || e[0] != '"' && !(e[0] == '{' && scoreMultimodal(e)) {
				return false
			}
		}
	}
	return false
}

// scoreMultimodal reports whether the object v is vLLM's ScoreMultiModalParam: its
// content a list.
func scoreMultimodal(v []byte) bool {
	c := MultimodalContent(v)
	return len(c) > 0 && c[0] == '['
}

// MultimodalContent is the content member of vLLM's multimodal object (a rerank's
// query or documents, a score call's item), nil without one: the last member of that
// name, its name's escapes decoded, as vLLM's parser reads it.
func MultimodalContent(v []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(v) != nil {
		return nil
	}
	var buf keyBuf
	var content []byte
	for {
		k, val, ok := it.Next()
		if !ok {
			return content
		}
		if string(keyName(k, &buf)) == "content" {
			content = val
		}
	}
}

// scoreKeys are the members of vLLM's ScoreRequest that hold its sides, and
// scorePairs its pairs of them (indices into scoreKeys) in the order its union of
// request models takes them (pooling/score/protocol.py): queries with documents,
// queries with items, data_1 with data_2, text_1 with text_2.
var (
	scoreKeys  = [...]string{"queries", "documents", "items", "data_1", "data_2", "text_1", "text_2"}
	scorePairs = [...][2]int{{0, 1}, {0, 2}, {3, 4}, {5, 6}}
)

// ScoreSides are the values of a score call's side members, by scoreKeys index (the
// last member of each name, as vLLM's parser keeps), nil where not given.
type ScoreSides [len(scoreKeys)][]byte

// Note keeps v as the value of the member named k (a name with its escapes
// decoded), when k is one of a score call's sides.
func (sd *ScoreSides) Note(k, v []byte) {
	for i, sk := range scoreKeys {
		if string(k) == sk {
			sd[i] = v
			return
		}
	}
}

// Pair is the pair of sides vLLM scores: the first in its union's order whose two
// members are sides (ScoreSide); nil, nil without one (the upstream's to refuse).
func (sd *ScoreSides) Pair() (left, right []byte) {
	for _, p := range scorePairs {
		if l, r := sd[p[0]], sd[p[1]]; l != nil && r != nil && ScoreSide(l) && ScoreSide(r) {
			return l, r
		}
	}
	return nil, nil
}

// scoreLeftItem is the first left item of the score call body: the first element of
// the left side of the pair vLLM scores, or the side itself when it is one item; nil
// without one.
func scoreLeftItem(body []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return nil
	}
	var sd ScoreSides
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		sd.Note(keyName(k, &buf), v)
	}
	left, _ := sd.Pair()
	var a jsonscan.Array
	if left == nil || left[0] != '[' || !a.Reset(left) {
		return left
	}
	first, _ := a.Next()
	return first
}
