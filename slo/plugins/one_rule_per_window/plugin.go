// Package plugin is a Sloth SLO plugin (Sloth interprets it; standard library and the packages
// Sloth itself uses only): it keeps one SLI recording rule per window.
//
// Why: Sloth records the SLI error ratio once for every alert window and once more for the SLO
// period. When the period equals an alert window - the 1-day error-rate SLO, whose 3x ticket
// has a 1d long window - it writes the rule for slo:sli_error:ratio_rate1d twice, with the same
// labels, and `promtool check rules` rejects the file. With Sloth's period "optimization"
// switched off for that SLO (see slo/specs/1d/error-rate.yml) both copies are the same
// expression, so dropping the second changes nothing else. Two copies that differ are an error:
// this plugin never chooses between two different expressions.
//
// Loaded by Sloth through python -m generate (--plugins-path slo/plugins).
package plugin

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/prometheus/prometheus/model/rulefmt"

	pluginslov1 "github.com/slok/sloth/pkg/prometheus/plugin/slo/v1"
)

const (
	PluginVersion = "prometheus/slo/v1"
	PluginID      = "hitl.local/slo/one-rule-per-window/v1"
)

func NewPlugin(_ json.RawMessage, _ pluginslov1.AppUtils) (pluginslov1.Plugin, error) {
	return plugin{}, nil
}

type plugin struct{}

func (plugin) ProcessSLO(_ context.Context, _ *pluginslov1.Request, result *pluginslov1.Result) error {
	exprs := map[string]string{} // record + window -> expression
	kept := []rulefmt.Rule{}
	for _, rule := range result.SLORules.SLIErrorRecRules.Rules {
		key := rule.Record + " window=" + rule.Labels["sloth_window"]
		expr, seen := exprs[key]
		if !seen {
			exprs[key] = rule.Expr
			kept = append(kept, rule)
			continue
		}
		if expr != rule.Expr {
			return fmt.Errorf("two different rules for %s: %q and %q", key, expr, rule.Expr)
		}
	}
	result.SLORules.SLIErrorRecRules.Rules = kept
	return nil
}
