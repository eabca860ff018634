package providers

import "github.com/tollgate/tollgate/internal/jsonscan"

// callRelay is a bridge's translation of a delta's tool call pieces, which readCalls
// reads for it.
type callRelay interface {
	// callDelta translates a piece of tool call n (numbered unset when the server
	// numbers no calls): its id, function name and arguments piece, raw, nil when
	// absent.
	callDelta(n int64, numbered bool, id, name, args []byte) error
}

// readCalls reads a delta's tool_calls (calls, raw) for r, piece by piece, stopping
// at the first error r gives.
func readCalls(calls []byte, r callRelay) error {
	var a jsonscan.Array
	if !a.Reset(calls) {
		return nil
	}
	for {
		call, ok := a.Next()
		if !ok {
			return nil
		}
		idx, id, name, args, ok := readCallDelta(call)
		if !ok {
			return errEventNotJSON
		}
		n, numbered := jsonscan.Int(idx)
		if err := r.callDelta(n, numbered, id, name, args); err != nil {
			return err
		}
	}
}

// readCallDelta reads a chat stream's tool call delta: its index, id, function name
// and arguments piece, raw (nil when absent); ok is false when call is no JSON
// object.
func readCallDelta(call []byte) (idx, id, name, args []byte, ok bool) {
	var fn []byte
	var it jsonscan.Iter
	if it.Reset(call) != nil {
		return nil, nil, nil, nil, false
	}
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "index":
			idx = v
		case "id":
			id = v
		case "function":
			fn = v
		}
	}
	if len(fn) > 0 && fn[0] == '{' {
		name, _ = jsonscan.Field(fn, "name")
		args, _ = jsonscan.Field(fn, "arguments")
	}
	return idx, id, name, args, true
}
