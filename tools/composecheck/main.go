// composecheck loads a Compose file with the real Compose loader (compose-spec/compose-go, the
// library docker compose itself uses), so that compose.yaml can be validated on machines
// without Docker. It interpolates variables, applies `include`, validates the result against
// the Compose specification's JSON schema, checks the model's consistency (every service,
// network, volume and secret that is referenced is defined), resolves relative paths and
// prints the normalized project as JSON on stdout. Any failure goes to stderr with exit 1.
//
// Usage:
//
//	composecheck [-f compose.yaml] [-env-file FILE]... [-os-env] [-profile NAME]...
//
// Interpolation variables come from the -env-file files (like `docker compose --env-file`: a
// later file overrides an earlier one) or, with none given, from the .env next to the Compose
// file, as docker compose does. -os-env adds the process environment, which wins over the
// files, again as in docker compose. Without it the result does not depend on the caller's
// shell, which is what the tests want.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var envFiles, profiles stringList
	file := flag.String("f", "compose.yaml", "Compose file to load")
	osEnv := flag.Bool("os-env", false, "also take interpolation variables from the process environment (as docker compose does)")
	flag.Var(&envFiles, "env-file", "file of KEY=value interpolation variables (repeatable)")
	flag.Var(&profiles, "profile", "profile to enable (repeatable); services in no profile are always loaded")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "composecheck: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	project, err := load(*file, envFiles, profiles, *osEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: %v\n", err)
		os.Exit(1)
	}
	out, err := marshal(project)
	if err != nil {
		fmt.Fprintf(os.Stderr, "composecheck: cannot print the model: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}

// marshal is the project's own JSON form plus each service's x-* extension fields, which
// compose-go keeps in the model but leaves out of its JSON (the tests read x-healthcheck-omitted).
func marshal(project *types.Project) ([]byte, error) {
	raw, err := project.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var model map[string]any
	if err := json.Unmarshal(raw, &model); err != nil {
		return nil, err
	}
	services, _ := model["services"].(map[string]any)
	for name, service := range project.Services {
		target, ok := services[name].(map[string]any)
		if !ok {
			continue
		}
		for key, value := range service.Extensions {
			target[key] = value
		}
	}
	return json.MarshalIndent(model, "", "  ")
}

func load(file string, envFiles, profiles []string, osEnv bool) (*types.Project, error) {
	opts := []cli.ProjectOptionsFn{
		// With no env file given, WithEnvFiles falls back to ./.env next to the Compose file,
		// as docker compose does. An explicit list replaces that default.
		cli.WithEnvFiles(envFiles...),
	}
	if osEnv {
		opts = append(opts, cli.WithOsEnv)
	}
	opts = append(opts,
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	options, err := cli.NewProjectOptions([]string{file}, opts...)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	return options.LoadProject(context.Background())
}
