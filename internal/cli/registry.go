package cli

import (
	"context"
	"fmt"

	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/errdefs"
	"github.com/berth-dev/berth/internal/image"
	"github.com/berth-dev/berth/internal/reference"
	"github.com/berth-dev/berth/internal/registry"
)

// registryHosts reads the registry settings (insecure registries, Docker
// Hub mirrors, certificate directories) from berth's config file:
// $BERTH_CONFIG, or /etc/berth/config.json.
func registryHosts() (*registry.Hosts, error) {
	return registry.LoadHosts(envOr("BERTH_CONFIG", registry.DefaultConfigPath))
}

func addRegistryCommands(root *cobra.Command) {
	pull, push := newPullCommand(), newPushCommand()
	root.AddCommand(pull, push, newLoginCommand(), newLogoutCommand())
	for _, c := range root.Commands() {
		if c.Name() == "image" {
			c.AddCommand(newPullCommand(), newPushCommand())
		}
	}
}

// clientError gives registry verbs Docker's client exit code, 1.
func clientError(err error) error {
	if err == nil {
		return nil
	}
	return codeError{code: 1, err: err}
}

func newPullCommand() *cobra.Command {
	var (
		all      bool
		platform string
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: withImages(func(cmd *cobra.Command, svc *image.Service, args []string) error {
			opts, err := registryOptions(platform)
			if err != nil {
				return clientError(err)
			}
			ctx, stop := interruptible()
			defer stop()
			return clientError(pullImages(ctx, svc, args[0], all, quiet, opts))
		}),
	}
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Download all tagged images in the repository")
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable (os/arch[/variant])")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output; print the manifest digest")
	cmd.Flags().Bool("disable-content-trust", true, "Skip image verification (accepted for Docker compatibility)")
	return cmd
}

// registryOptions are the options every registry verb passes: the config
// file's hosts, and the platform when one was asked for.
func registryOptions(platform string) ([]registry.Option, error) {
	hosts, err := registryHosts()
	if err != nil {
		return nil, err
	}
	opts := []registry.Option{registry.WithHosts(hosts)}
	if platform != "" {
		parts := strings.Split(platform, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("invalid --platform %q: want os/arch[/variant], e.g. linux/arm64: %w", platform, errdefs.ErrInvalidArgument)
		}
		variant := ""
		if len(parts) == 3 {
			variant = parts[2]
		}
		opts = append(opts, registry.WithPlatform(parts[0], parts[1], variant))
	}
	return opts, nil
}

// pullImages pulls ref, or with all every tag of its repository.
func pullImages(ctx context.Context, svc *image.Service, ref string, all, quiet bool, opts []registry.Option) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		_, err = image.ParseRef(ref) // its message says what is wrong
		return err
	}
	if !all {
		if reference.IsNameOnly(named) && !quiet {
			fmt.Println("Using default tag: latest")
		}
		return pullOne(ctx, svc, ref, quiet, opts, os.Stdout, true)
	}
	if !reference.IsNameOnly(named) {
		return fmt.Errorf("tag can't be used with --all-tags/-a: %w", errdefs.ErrInvalidArgument)
	}
	tags, err := registry.Tags(ctx, ref, opts...)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return fmt.Errorf("%s has no tags to pull: %w", reference.FamiliarName(named), errdefs.ErrNotFound)
	}
	for _, tag := range tags {
		if err := pullOne(ctx, svc, named.Name()+":"+tag, quiet, opts, os.Stdout, true); err != nil {
			return err
		}
	}
	return nil
}

// pullOne pulls one reference with Docker's output on w: per-layer
// progress, the digest, whether anything new arrived and, with full (as
// `docker pull`, not run's implicit pull), the full reference.
func pullOne(ctx context.Context, svc *image.Service, ref string, quiet bool, opts []registry.Option, w *os.File, full bool) error {
	named, err := image.ParseRef(ref)
	if err != nil {
		return err
	}
	familiar := image.FamiliarString(named)
	before, _ := svc.Get(named.String())
	var lines *progressLines
	if !quiet {
		lines = newProgressLines(w)
		tagOrDigest := "latest"
		if d, ok := named.(reference.Digested); ok {
			tagOrDigest = d.Digest().String()
		} else if t, ok := named.(reference.Tagged); ok {
			tagOrDigest = t.Tag()
		}
		fmt.Fprintf(w, "%s: Pulling from %s\n", tagOrDigest, reference.Path(named))
		opts = append(opts, registry.WithProgress(lines.pullEvent))
	}
	img, err := registry.Pull(ctx, svc, ref, opts...)
	if lines != nil {
		lines.finish()
	}
	if err != nil {
		return err
	}
	digest := ""
	if len(img.RepoDigests) > 0 {
		_, digest, _ = strings.Cut(img.RepoDigests[0], "@")
	}
	if quiet {
		fmt.Fprintln(w, digest)
		return nil
	}
	fmt.Fprintf(w, "Digest: %s\n", digest)
	if before != nil && before.ID == img.ID {
		fmt.Fprintf(w, "Status: Image is up to date for %s\n", familiar)
	} else {
		fmt.Fprintf(w, "Status: Downloaded newer image for %s\n", familiar)
	}
	if full {
		fmt.Fprintln(w, named.String())
	}
	return nil
}

// ensureImage makes the image of run and create present as Docker's
// --pull says: missing pulls it when it is not here (after Docker's
// "Unable to find image ... locally"), always pulls it every time, never
// only looks (Create then says there is no such image). The pull's output
// goes to stderr, as docker run's does, so stdout stays the container's.
// A reference that is no name (an image ID) is never pulled.
func ensureImage(svc *image.Service, ref, policy string) error {
	if policy == "never" {
		return nil
	}
	if policy == "missing" {
		if _, err := svc.Get(ref); !errdefs.IsNotFound(err) {
			return err
		}
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil
	}
	named = reference.TagNameOnly(named)
	if policy == "missing" {
		fmt.Fprintf(os.Stderr, "Unable to find image '%s' locally\n", reference.FamiliarString(named))
	}
	opts, err := registryOptions("")
	if err != nil {
		return err
	}
	ctx, stop := interruptible()
	defer stop()
	return pullOne(ctx, svc, named.String(), false, opts, os.Stderr, false)
}

func newPushCommand() *cobra.Command {
	var (
		all   bool
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: withImages(func(cmd *cobra.Command, svc *image.Service, args []string) error {
			opts, err := registryOptions("")
			if err != nil {
				return clientError(err)
			}
			ctx, stop := interruptible()
			defer stop()
			return clientError(pushImages(ctx, svc, args[0], all, quiet, opts))
		}),
	}
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Push all local tags of the repository")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().Bool("disable-content-trust", true, "Skip image signing (accepted for Docker compatibility)")
	return cmd
}

// pushImages pushes ref, or with all every local tag of its repository,
// with Docker's output.
func pushImages(ctx context.Context, svc *image.Service, ref string, all, quiet bool, opts []registry.Option) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		_, err = image.ParseRef(ref)
		return err
	}
	refs := []string{reference.TagNameOnly(named).String()}
	if all {
		if !reference.IsNameOnly(named) {
			return fmt.Errorf("tag can't be used with --all-tags/-a: %w", errdefs.ErrInvalidArgument)
		}
		if refs, err = localTags(svc, named); err != nil {
			return err
		}
	} else if reference.IsNameOnly(named) && !quiet {
		fmt.Println("Using default tag: latest")
	}
	if !quiet {
		fmt.Printf("The push refers to repository [%s]\n", named.Name())
	}
	for _, r := range refs {
		var lines *progressLines
		o := opts
		if !quiet {
			lines = newProgressLines(os.Stdout)
			o = append(o[:len(o):len(o)], registry.WithProgress(lines.show))
		}
		d, size, err := registry.Push(ctx, svc, r, o...)
		if err != nil {
			return err
		}
		if quiet {
			fmt.Println(r)
			continue
		}
		_, tag, _ := strings.Cut(r[len(named.Name()):], ":")
		fmt.Printf("%s: digest: %s size: %d\n", tag, d, size)
	}
	return nil
}

// localTags lists the local tags of a repository, sorted.
func localTags(svc *image.Service, named reference.Named) ([]string, error) {
	name := reference.FamiliarName(named)
	imgs, err := svc.List()
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, img := range imgs {
		for _, t := range img.RepoTags {
			if repo, _ := image.SplitRepoTag(t); repo == name {
				refs = append(refs, t)
			}
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("An image does not exist locally with the tag: %s: %w", name, errdefs.ErrNotFound)
	}
	sort.Strings(refs)
	return refs, nil
}
