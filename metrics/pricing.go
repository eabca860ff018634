package metrics

import (
	"errors"
	"math"
)

// Pricing is a backend's price list, the `pricing:` key of a backend. The
// gateway computes a request's cost with Cost and passes it to Route.Done;
// prices live with the metrics because the cost counter is their only use.
type Pricing struct {
	// InputPerMillion is the price in USD of one million input tokens.
	InputPerMillion float64 `yaml:"input_per_million"`
	// OutputPerMillion is the price in USD of one million output tokens.
	OutputPerMillion float64 `yaml:"output_per_million"`
}

// Cost returns the price in USD of a request with the given token counts.
// Negative counts cost nothing.
func (p Pricing) Cost(inTok, outTok int64) float64 {
	var c float64
	if inTok > 0 {
		c += float64(inTok) * p.InputPerMillion
	}
	if outTok > 0 {
		c += float64(outTok) * p.OutputPerMillion
	}
	return c / 1e6
}

// Validate reports negative or non-finite prices.
func (p Pricing) Validate() error {
	var errs []error
	check := func(key string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			errs = append(errs, &FieldError{key: key, problem: "must be a finite number >= 0"})
		}
	}
	check("input_per_million", p.InputPerMillion)
	check("output_per_million", p.OutputPerMillion)
	return errors.Join(errs...)
}

// FieldError is one invalid configuration key.
type FieldError struct{ key, problem string }

// Key returns the dotted path of the key relative to the struct validated.
func (e *FieldError) Key() string { return e.key }

// Problem says what is wrong with the key's value.
func (e *FieldError) Problem() string { return e.problem }

// Error returns key + ": " + problem.
func (e *FieldError) Error() string { return e.key + ": " + e.problem }
